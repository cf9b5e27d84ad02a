"""The job kinds, by name -> the module that implements them.

Each kind module provides:
    validate(params: dict, settings) -> dict        clean params, or raise InvalidInput (before queueing)
    estimate(params: dict, settings) -> dict        {"memory_bytes": int, "device": "cpu"|"cuda", "seconds": float|None}
    run(ctx: JobContext) -> dict                    do the work in the worker process; returns the result
    describe(params: dict) -> str                   one line for tables: "LoRA on gemma-3-270m"
"""
from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import InvalidInput

KINDS: dict[str, str] = {
    "benchmark": "llmos_core.jobs.benchmark",
    "train": "llmos_core.training.job",
    "translate": "llmos_core.translation.job",
}


def kind_module(kind: str) -> ModuleType:
    if kind not in KINDS:
        raise InvalidInput(f"unknown job kind {kind!r}", f"kinds: {', '.join(sorted(KINDS))}")
    return importlib.import_module(KINDS[kind])
