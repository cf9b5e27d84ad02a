#!/usr/bin/env bash
# Re-resolves the lock: requirements.in -> requirements.txt, requirements-dev.in -> requirements-dev.txt,
# every package pinned with ==, transitive ones included. Run it after editing a .in file, or to take
# newer releases on purpose (then run the tests: `bash tests/run.sh` builds a venv from the new lock).
#   bash tools/lock.sh             # keep today's pins where the .in files still allow them
#   bash tools/lock.sh --upgrade   # take the newest releases the .in files allow
# The lock is resolved for Linux x86_64 and CPython 3.11 (this project's machines). torch is resolved as
# the CPU-only build (no CUDA libraries among the pins) and written as `torch==X`, which PyPI's CUDA
# build of the same version satisfies too: README, "A GPU build of torch".
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=$(sed -n "s/^uv==//p" requirements-dev.txt 2>/dev/null || true)
UV_VERSION=${UV_VERSION:-0.13.10}
if ! command -v uv >/dev/null 2>&1 || [ "$(uv --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
    python3 -m pip install -q "uv==$UV_VERSION"
fi
# The CPU wheel of the pinned torch: a local folder of wheels when the machine has one (these machines:
# /opt/wheels), else the PyTorch CPU index.
torch_source=(--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
if compgen -G "${LLMOS_TORCH_WHEELS:-/opt/wheels}/torch-*+cpu-*.whl" >/dev/null; then
    torch_source=(--find-links "${LLMOS_TORCH_WHEELS:-/opt/wheels}")
fi
compile() {  # compile IN OUT
    # uv keeps the pins already in OUT where it can: give it back the CPU build's name, or it would
    # prefer PyPI's CUDA build of the same version (and its CUDA libraries).
    [ -f "$2" ] && sed -i -E 's/^torch==([0-9.]+)$/torch==\1+cpu/' "$2"
    uv pip compile "$1" -o "$2" --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
        "${torch_source[@]}" --no-emit-index-url --no-emit-find-links --no-header --quiet "${@:3}"
    # Drop the local build label: the lock names the version, the machine picks the build.
    sed -i -E 's/^torch==([0-9.]+)\+cpu$/torch==\1/' "$2"
    { printf '# The lock: compiled from %s by tools/lock.sh; edit the .in file, not this one.\n' "$1"; cat "$2"; } >"$2.tmp"
    mv "$2.tmp" "$2"
}
upgrade=()
[ "${1:-}" = "--upgrade" ] && upgrade=(--upgrade)
compile requirements.in requirements.txt "${upgrade[@]}"
# The dev lock starts from the runtime pins, so both files agree on every shared package.
compile requirements-dev.in requirements-dev.txt "${upgrade[@]}" --constraint requirements.txt
echo "lock: $(grep -c '==' requirements.txt) runtime packages, $(grep -c '==' requirements-dev.txt) with the test tools"
