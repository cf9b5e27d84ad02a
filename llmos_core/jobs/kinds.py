"""The job kinds, by name -> the module that implements them.

Each kind module provides:
    validate(params: dict, settings) -> dict        clean params, or raise InvalidInput (before queueing)
    estimate(params: dict, settings) -> dict        {"memory_bytes": int, "device": "cpu"|"cuda", "seconds": float|None}
    run(ctx: JobContext) -> dict                    do the work in the worker process; returns the result
    describe(params: dict) -> str                   one line for tables: "LoRA on gemma-3-270m"
and may set RESUMABLE = True when run() continues from ctx.checkpoint_dir if ctx.resume is True, and
PATH_PARAMS = ("input", ...): the parameters that name files, which a web visitor may point only inside
the data folder (llmos_core/access.py checks them before validate() reads anything).
"""
from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import InvalidInput

KINDS: dict[str, str] = {
    "benchmark": "llmos_core.jobs.benchmark",
    "export": "llmos_core.training.export_job",
    "index": "llmos_core.rag.job",
    "train": "llmos_core.training.job",
    "translate": "llmos_core.translation.job",
}


def kind_module(kind: str) -> ModuleType:
    if kind not in KINDS:
        raise InvalidInput(f"unknown job kind {kind!r}", f"kinds: {', '.join(sorted(KINDS))}")
    try:
        return importlib.import_module(KINDS[kind])
    except ImportError as exc:   # a kind whose module or dependencies are missing on this install
        raise InvalidInput(f"job kind {kind!r} cannot be loaded: {exc}", "check the installation") from exc


def is_resumable(kind: str) -> bool:
    """A kind that sets RESUMABLE = True can continue a cancelled, interrupted or failed run (ctx.resume)."""
    try:
        return bool(getattr(kind_module(kind), "RESUMABLE", False))
    except InvalidInput:   # unknown or not loadable: nothing to resume with
        return False
