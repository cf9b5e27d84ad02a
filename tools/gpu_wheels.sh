#!/usr/bin/env bash
# Downloads into .whl/ the wheels a lent GPU machine lacks (bench/gpu_check.sh installs them there): the lock's
# versions of what LLM OS's engine imports beyond that machine's own packages (CUDA torch, transformers, peft,
# accelerate, psutil, nvidia-ml-py, numpy, ...), for CPython 3.12 on x86_64 Linux. Under 64 MiB in all, the
# most one device call may carry. Pure-Python packages published only as source are built into wheels here.
set -euo pipefail
cd "$(dirname "$0")/.."
NEEDED="gguf python-docx pypdf langdetect argon2-cffi argon2-cffi-bindings fastapi starlette pydantic pydantic-core
annotated-types typing-inspection uvicorn prometheus-client llguidance"
rm -rf .whl && mkdir -p .whl
for name in $NEEDED; do
    pin=$(grep -iE "^${name}==" requirements.txt | head -1 || true)
    [ -n "$pin" ] || { echo "gpu_wheels: $name is not in requirements.txt, skipped" >&2; continue; }
    python3 -m pip download -q --no-deps -d .whl --only-binary=:all: --python-version 3.12 \
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
        "$pin" 2>/dev/null || python3 -m pip wheel -q --no-deps -w .whl "$pin"
done
du -sh .whl
