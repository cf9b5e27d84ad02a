#!/usr/bin/env bash
# The test command: builds a venv from the lock, checks it is the lock, then runs the tests in it.
#   bash tests/run.sh [pytest arguments]
# The venv is made from requirements-dev.txt alone (every package pinned; tools/lock.sh writes it), under
# ~/.cache/llmos/ in a folder named by the lock's hash: a changed lock gets a fresh venv, an unchanged one
# reuses it, so the tests never run on whatever else this machine has installed. LLMOS_TEST_VENV=DIR picks
# the folder instead. The first build compiles llama-cpp-python (about 10 minutes; pip keeps the wheel).
# Browser tests use Debian's Chromium, installed here through apt-get when run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
LOCK=requirements-dev.txt
BASE_PY=${PYTHON:-python3}

say() { printf 'tests/run.sh: %s\n' "$*" >&2; }

lock_hash=$( { cat "$LOCK"; "$BASE_PY" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-16)
cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/llmos
VENV=${LLMOS_TEST_VENV:-$cache_root/test-venv-$lock_hash}
PY=$VENV/bin/python

mkdir -p "$cache_root"
# One build at a time per machine (two test runs at once share the venv and the apt install).
exec 9>"$cache_root/.setup.lock"
flock 9
if [ ! -f "$VENV/.built-from-lock" ]; then
    say "building a venv from $LOCK in $VENV (lock $lock_hash)"
    rm -rf "$VENV"
    "$BASE_PY" -m venv "$VENV"
    "$PY" -m pip install -q -r "$LOCK"
    cp "$LOCK" "$VENV/.built-from-lock"
    # Older lock venvs are dead weight (a few GB each): keep this one and the one before.
    if [ -z "${LLMOS_TEST_VENV:-}" ]; then
        ls -1dt "$cache_root"/test-venv-* 2>/dev/null | tail -n +3 | xargs -r rm -rf
    fi
fi
# The venv must still be the lock (someone may have pip-installed into it): reinstall what differs.
if ! "$PY" -m llmos_core.lockcheck "$LOCK" >/dev/null; then
    "$PY" -m llmos_core.lockcheck "$LOCK" | sed 's/^/tests\/run.sh: differs from the lock: /' >&2 || true
    say "reinstalling the locked versions"
    "$PY" -m pip install -q -r "$LOCK"
    if ! "$PY" -m llmos_core.lockcheck "$LOCK" >&2; then
        say "the venv still differs from $LOCK (above); remove $VENV and run again"
        exit 2
    fi
fi
say "testing in $VENV, built from $LOCK (lock $lock_hash): $("$PY" -m llmos_core.lockcheck "$LOCK" | tail -1)"
export VIRTUAL_ENV=$VENV PATH=$VENV/bin:$PATH

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

flock -u 9
exec "$PY" -m pytest -q "$@"
