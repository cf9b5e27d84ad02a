#!/usr/bin/env bash
# The one prepared script for a lent GPU machine (the device tool), under 8 minutes:
#   bash tools/gpu_wheels.sh            # here, once: the wheels that machine lacks, from the lock, into .whl/
#   device run: bash bench/gpu_check.sh  (carry: .whl)
# That machine has Python 3.12 with a CUDA PyTorch, transformers, peft, accelerate, psutil and nvidia-ml-py,
# and no network: what else LLM OS imports travels as wheels in .whl/ and installs from there alone. A CUDA
# build of llama-cpp-python, where one is installed, adds the llama.cpp offload row (README: llama.cpp on a GPU).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/gpu-check-out}
mkdir -p "$OUT"
if [ -d .whl ]; then
    "$PY" -m pip install -q --no-index --find-links .whl --no-deps .whl/*.whl 2>&1 | tail -3
fi
{
    echo "== nvidia-smi"; nvidia-smi || true
    echo "== doctor"; timeout 120 "$PY" -m llmos_core doctor --quick || true
    echo "== bench/gpu_check.py"; timeout 420 "$PY" bench/gpu_check.py --json "$OUT/gpu_check.json"
} 2>&1 | tee "$OUT/gpu_check.log"
