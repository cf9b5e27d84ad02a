"""The `translate` job kind: a long document translated in a worker process, so it survives a page refresh.

params: input (path of the uploaded file, kept under the data folder), filename (its name as
uploaded), target, source ("auto" or a code), model (catalog name), glossary ({term: translation}),
pdf_output ("docx" | "txt"), batch_size. The result names the output file and segments.json
(source and translation per segment), from which the page shows the side-by-side preview and
renders again after the user edits a segment. Both are written whole or not at all.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..errors import InvalidInput
from ..settings import Settings
from . import documents
from .isolation import parse_in_child
from .languages import check_language, language_name
from ..accounts import User, user_home
from .glossary import Glossary
from .memory import TranslationMemory
from .translator import Translator, not_translated_message, open_engine

SEGMENTS_FILE = "segments.json"
# Parameters that are paths: from the web app they must lie in the data folder (access.check_job_params).
PATH_PARAMS = ("input",)


def job_threshold() -> int:
    """Documents with more segments than this run as a job, not in the page (about a minute or more on
    a CPU with a small model). LLMOS_TRANSLATE_JOB_SEGMENTS overrides it."""
    try:
        return max(0, int(os.environ.get("LLMOS_TRANSLATE_JOB_SEGMENTS", "150")))
    except ValueError:
        return 150


def validate(params: dict, settings: Settings) -> dict:
    path = Path(str(params.get("input") or ""))
    if not path.is_file():
        raise InvalidInput(f"the document to translate is missing: {path}", "upload it again")
    filename = str(params.get("filename") or path.name)
    pdf_output = params.get("pdf_output") or "docx"
    # validate runs in the server (the scheduler's submit): the untrusted parse goes to a child process
    doc = parse_in_child(path.read_bytes(), filename, settings.max_upload_mb * 1024**2, pdf_output)
    source = params.get("source") or "auto"
    glossary = params.get("glossary") or {}
    if not isinstance(glossary, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in glossary.items()):
        raise InvalidInput("the glossary must map terms to translations (text to text)")
    model = str(params.get("model") or "").strip()
    if not model:
        raise InvalidInput("no translation model given", "pick a model from the catalog")
    return {"input": str(path), "filename": filename, "target": check_language(params.get("target", ""), "target language"),
            "source": source if source == "auto" else check_language(source, "source language"), "model": model,
            "glossary": glossary, "pdf_output": pdf_output, "batch_size": int(params.get("batch_size") or 8),
            "segments": len(doc.segments)}


def estimate(params: dict, settings: Settings) -> dict:
    from ..models.backends import job_model_estimate

    memory, device = job_model_estimate(settings, params["model"])
    return {"memory_bytes": memory, "device": device, "seconds": None}


def describe(params: dict) -> str:
    return f"Translate {params.get('filename', 'a document')} to {language_name(params.get('target', ''))} " \
           f"with {params.get('model', '?')}"


def run(ctx) -> dict:
    from ..engine import Engine

    params = ctx.params
    doc = documents.parse(Path(params["input"]).read_bytes(), params["filename"], ctx.settings.max_upload_mb * 1024**2,
                          params.get("pdf_output") or "docx")
    ctx.progress(0.0, f"{len(doc.segments)} segments; loading {params['model']}")
    engine = Engine(ctx.settings, primary=False, start_threads=False)
    started = time.perf_counter()
    owner_home = user_home(ctx.settings.home, User(ctx.owner, "", "user"))   # the owner's memory and glossary
    try:
        with open_engine(engine, params["model"]) as model:
            translator = Translator(model, params["target"], params.get("source") or "auto", params.get("glossary"),
                                    batch_size=params.get("batch_size") or 8,
                                    memory=TranslationMemory.for_home(owner_home),
                                    saved_glossary=Glossary.for_home(owner_home))
            step = 0

            def progress(done: int, total: int, eta: float | None) -> None:
                nonlocal step
                step += 1
                left = f", about {eta:.0f} s left" if eta is not None else ""
                ctx.progress(done / max(total, 1), f"{done}/{total} segments{left}")
                ctx.metric(step, segments_done=done, segments_per_s=done / max(time.perf_counter() - started, 1e-6))

            texts = translator.translate(doc.texts(), progress, ctx.cancelled)
    finally:
        engine.close()
    if texts is None:
        ctx.log.info("cancelled before the end; no output was written")
        return {"cancelled": True}
    output = ctx.work_dir / doc.output_name
    documents.write_output(ctx.work_dir / SEGMENTS_FILE, json.dumps(
        {"sources": doc.texts(), "translations": texts, "stats": translator.stats.to_dict(), "notes": doc.notes},
        ensure_ascii=False).encode("utf-8"))
    documents.write_output(output, doc.render(texts))
    kept = translator.stats.kept_source
    ctx.progress(1.0, f"done: {len(texts)} segments in {translator.stats.seconds:.0f} s"
                 + (f"; {not_translated_message(kept)}" if kept else ""))
    return {"output": str(output), "segments_file": str(ctx.work_dir / SEGMENTS_FILE), "segments": len(texts),
            "stats": translator.stats.to_dict()}
