"""The `index` job kind: a large upload parsed, cut into passages and embedded in a worker process,
with progress on the Jobs and Ask pages, so it outlives the page and holds no browser session.

params: input (a folder under the data folder holding the uploaded files, named NNNN-name so the
upload order is kept), collection, embed_model. The result counts the passages per file.
Cancelled, it stops between batches: what is stored stays (passages not yet embedded are still found
by full-text search), and the Ask page shows those files as parsed.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

from ..errors import InvalidInput
from ..settings import Settings
from .index import check_collection_name

# Parameters that are paths: from the web app they must lie in the data folder (access.check_job_params).
PATH_PARAMS = ("input",)
_ORDER_PREFIX = re.compile(r"^\d{4}-")


def uploaded_files(folder: Path) -> list[tuple[str, Path]]:
    """(name as uploaded, path) of the files in a submitted folder, in upload order."""
    return [(_ORDER_PREFIX.sub("", path.name), path) for path in sorted(folder.iterdir()) if path.is_file()]


def validate(params: dict, settings: Settings) -> dict:
    folder = Path(str(params.get("input") or ""))
    if not folder.is_dir() or not uploaded_files(folder):
        raise InvalidInput(f"the files to index are missing: {folder}", "upload them again")
    model = str(params.get("embed_model") or "").strip()
    if not model:
        raise InvalidInput("no embedding model given", "pick a sentence-embedding model from the catalog")
    return {"input": str(folder), "collection": check_collection_name(params.get("collection")), "embed_model": model,
            "files": len(uploaded_files(folder))}


def estimate(params: dict, settings: Settings) -> dict:
    from ..models.backends import job_model_estimate

    memory, device = job_model_estimate(settings, params["embed_model"])
    return {"memory_bytes": memory, "device": device, "seconds": None}


def describe(params: dict) -> str:
    files = params.get("files")
    return f"Index {files if files else 'the'} file(s) into {params.get('collection', '?')}"


def run(ctx) -> dict:
    from ..engine import Engine
    from .index import DocumentIndex
    from .ingest import add_files

    params = ctx.params
    files = [(name, path.read_bytes()) for name, path in uploaded_files(Path(params["input"]))]
    ctx.progress(0.0, f"{len(files)} file(s); loading {params['embed_model']}")
    engine = Engine(ctx.settings, primary=False, start_threads=False)
    started = time.perf_counter()
    step = 0

    def progress(done: float, total: int, what: str) -> None:
        nonlocal step
        step += 1
        ctx.progress(done / max(total, 1), what)
        ctx.metric(step, files_done=done, seconds=time.perf_counter() - started)

    try:
        reports = add_files(engine, DocumentIndex(engine.store), params["collection"], files,
                            ctx.owner, params["embed_model"],
                            progress, ctx.cancelled)
    finally:
        engine.close()
    result = {"collection": params["collection"], "files": [report.__dict__ for report in reports],
              "passages": sum(report.chunks for report in reports)}
    if ctx.cancelled():
        ctx.log.info("cancelled: %d of %d file(s) indexed", len(reports), len(files))
        return {**result, "cancelled": True}
    ctx.progress(1.0, f"done: {result['passages']} passages from {len(reports)} file(s) "
                      f"in {time.perf_counter() - started:.0f} s")
    return result
