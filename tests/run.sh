#!/usr/bin/env bash
# The test command: installs what the tests need on this machine, then runs them.
#   bash tests/run.sh [pytest arguments]
# On a fresh machine it installs torch (the CPU build, unless a torch is already there), the
# requirements, and Debian's Chromium for the browser tests (apt-get, as root). Installed things are
# left alone, so a second run starts the tests at once.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
PY=${PYTHON:-python3}

say() { printf 'tests/run.sh: %s\n' "$*" >&2; }

# torch first: requirements.txt accepts any torch >= 2.4, and an unpinned install pulls a CUDA build of
# several GB. A GPU user installs their CUDA build beforehand and it is kept.
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    say "installing torch (CPU build)"
    "$PY" -m pip install -q torch==2.13.0 || "$PY" -m pip install -q torch \
        --index-url https://download.pytorch.org/whl/cpu
fi
say "installing requirements-dev.txt (the first install compiles llama-cpp-python, about 10 minutes)"
"$PY" -m pip install -q -r requirements-dev.txt

# Browser tests drive Debian's Chromium at /usr/bin/chromium (never `playwright install`).
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing Debian's chromium for the browser tests"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        say "installing Debian's chromium for the browser tests (sudo)"
        sudo apt-get update -qq
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    else
        say "the browser tests need Debian's Chromium at /usr/bin/chromium, and this script cannot install it"
        say "(it needs root and apt-get). Install it with: sudo apt-get install -y chromium chromium-driver"
        say "or run the other tests alone: bash tests/run.sh -m 'not e2e'"
        if [[ " $* " != *"not e2e"* ]]; then exit 2; fi
    fi
fi

exec "$PY" -m pytest -q "$@"
