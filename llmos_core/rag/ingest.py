"""Files into a collection: parse each in a limited child process, cut it into passages, store them
with their text index, and embed them in batches with the collection's sentence-embedding model.

Used by the Ask page and the CLI for small uploads (usecases/ask.py), and by the `index` job
(rag/job.py) for large ones, so both index alike. The original files are kept under
LLMOS_HOME/collections/NAME/.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import InvalidInput
from ..models.catalog import DEFAULT_EMBEDDING_MODEL, EMBEDDING
from ..translation.isolation import parse_in_child
from .chunking import chunk_document, document_blocks
from .index import DocumentIndex, check_collection_name

FILE_TYPES = ["txt", "md", "docx", "pdf", "srt", "html", "htm"]
EMBED_BATCH = 64
MAX_EMBED_CHARS = 1200       # what one passage's vector is made from (a heading and a passage, ~300 tokens)
_UNSAFE_FILE_CHARS = re.compile(r"[^\w.\- ()]+", re.UNICODE)

Progress = Callable[[float, int, str], None]    # (files done, a fraction within the current one; files; what)


@dataclass
class FileReport:
    name: str
    status: str                  # embedded | failed
    chunks: int = 0
    embedded: int = 0
    error: str = ""


def safe_file_name(name: str) -> str:
    """An upload's name as a plain file name in the collection's folder (no path, no leading dot)."""
    base = _UNSAFE_FILE_CHARS.sub("_", Path(str(name).replace("\\", "/")).name).strip(" .")[:120]
    if not base:
        raise InvalidInput(f"{str(name)[:80]!r} is not a usable file name", "rename the file")
    return base


def collection_folder(engine, name: str) -> Path:
    return engine.settings.home / "collections" / check_collection_name(name)


def embed_texts(engine, model: str) -> Callable[[list[str]], list[list[float]]]:
    return lambda texts: engine.embeddings.embed(model, texts).vectors


def embedding_model(engine, index: DocumentIndex, collection: str, embed_model: str | None) -> str:
    """The collection's model (fixed when it was made), or the one asked for a new collection."""
    existing = index.find(collection)
    model = existing["embed_model"] if existing else (embed_model or DEFAULT_EMBEDDING_MODEL)
    if engine.catalog.get(model).task != EMBEDDING:
        raise InvalidInput(f"{model} is not a sentence-embedding model", "pick one whose task is sentence-embedding")
    return model


def add_files(engine, index: DocumentIndex, collection: str, files: list[tuple[str, bytes]], owner: int,
              embed_model: str | None = None, progress: Progress | None = None,
              cancelled: Callable[[], bool] = lambda: False) -> list[FileReport]:
    """Parse, chunk and embed each file into the collection (made on first use). A file that cannot be
    read is recorded as failed with the reason, and the others still go in. `cancelled` is asked
    between batches: what is stored by then stays (a passage without its vector is found by BM25)."""
    check_collection_name(collection)
    if not files:
        raise InvalidInput("no files to add", "choose one or more documents: " + ", ".join(FILE_TYPES))
    model = embedding_model(engine, index, collection, embed_model)
    index.create_collection(collection, model, owner)   # another user's name is refused here
    folder = collection_folder(engine, collection)
    folder.mkdir(parents=True, exist_ok=True)
    embed = embed_texts(engine, model)
    reports = []
    for number, (raw_name, data) in enumerate(files):
        if cancelled():
            break
        name = safe_file_name(raw_name)
        fmt = Path(name).suffix.lstrip(".").lower()
        if progress:
            progress(number, len(files), f"reading {name}")
        try:
            doc = parse_in_child(data, name, engine.settings.max_upload_mb * 1024**2, pdf_output="txt")
        except InvalidInput as exc:
            index.mark_failed(collection, name, fmt, len(data), str(exc))
            reports.append(FileReport(name, "failed", error=str(exc)))
            continue
        (folder / name).write_bytes(data)
        chunks = chunk_document(doc)
        text = "\n".join(block.text for block in document_blocks(doc))
        document_id = index.add_document(collection, name, doc.format, len(data), text, chunks)
        pending = index.unembedded(document_id)
        embedded = 0
        for start in range(0, len(pending), EMBED_BATCH):
            if cancelled():
                break
            batch = pending[start:start + EMBED_BATCH]
            if progress:
                progress(number + start / len(pending), len(files), f"embedding {name}: {start}/{len(pending)} passages")
            inputs = [(row["text"] if not row["heading"] or row["text"].startswith(row["heading"])
                       else f"{row['heading']}\n{row['text']}")[:MAX_EMBED_CHARS] for row in batch]
            index.store_vectors(document_id, [row["id"] for row in batch], embed(inputs))
            embedded += len(batch)
        reports.append(FileReport(name, "embedded" if embedded == len(pending) else "parsed", len(chunks), embedded))
    if progress:
        progress(len(reports), len(files), "done" if len(reports) == len(files) else "cancelled")
    return reports
