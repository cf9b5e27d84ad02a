"""Ask your documents: collections of uploaded files, and questions answered from them with citations.

    report = add_files(engine, "handbook", [("leave.docx", data)])       # parse, chunk, embed
    plan = prepare(engine, "handbook", "How many days of leave?", model, params)
    result = answer(engine, plan, params)      # or stream engine.chat.stream(model, plan.messages, ...)
                                               # and call finish(plan, text, stats)

Uploads are parsed in a limited child process (translation/isolation.py), cut into passages
(rag/chunking.py), stored with a full-text index and embedded by a sentence-embedding model held by the
memory manager (it is loaded, counted and evicted like any model, and a chat in progress pins its own
model, so indexing never evicts it). The original files are kept under LLMOS_HOME/collections/NAME/.
A question no passage matches gets NOT_FOUND without asking the model, so nothing is invented.
"""
from __future__ import annotations

import re
import shutil
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import InvalidInput, LLMOSError
from ..generation import SamplingParams
from ..models.catalog import DEFAULT_EMBEDDING_MODEL, EMBEDDING
from ..rag.answer import NOT_FOUND, Context, build_messages, choose_context, citations
from ..rag.chunking import chunk_document, document_blocks
from ..rag.index import DocumentIndex, check_collection_name
from ..rag.retrieve import Retrieval, retrieve  # noqa: F401  (retrieve: tests and bench use it from here)
from ..translation.isolation import parse_in_child

FILE_TYPES = ["txt", "md", "docx", "pdf", "srt", "html", "htm"]
EMBED_BATCH = 64
MAX_EMBED_CHARS = 1200       # what one passage's vector is made from (a heading and a passage, ~300 tokens)
_UNSAFE_FILE_CHARS = re.compile(r"[^\w.\- ()]+", re.UNICODE)
_indexes: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()

Progress = Callable[[int, int, str], None]    # (done, total, what)


def index_for(engine) -> DocumentIndex:
    """One index per database, so its vector matrices are read once and shared by every session."""
    index = _indexes.get(engine.store)
    if index is None:
        index = _indexes[engine.store] = DocumentIndex(engine.store)
    return index


def safe_file_name(name: str) -> str:
    """An upload's name as a plain file name in the collection's folder (no path, no leading dot)."""
    base = _UNSAFE_FILE_CHARS.sub("_", Path(str(name).replace("\\", "/")).name).strip(" .")[:120]
    if not base:
        raise InvalidInput(f"{str(name)[:80]!r} is not a usable file name", "rename the file")
    return base


def collection_folder(engine, name: str) -> Path:
    return engine.settings.home / "collections" / check_collection_name(name)


@dataclass
class FileReport:
    name: str
    status: str                  # embedded | failed
    chunks: int = 0
    embedded: int = 0
    error: str = ""


def embed_texts(engine, model: str) -> Callable[[list[str]], list[list[float]]]:
    return lambda texts: engine.embeddings.embed(model, texts).vectors


def add_files(engine, collection: str, files: list[tuple[str, bytes]], embed_model: str | None = None,
              progress: Progress | None = None) -> list[FileReport]:
    """Parse, chunk and embed each file into the collection (made on first use). A file that cannot be
    read is recorded as failed with the reason, and the others still go in."""
    check_collection_name(collection)
    if not files:
        raise InvalidInput("no files to add", "choose one or more documents: " + ", ".join(FILE_TYPES))
    index = index_for(engine)
    existing = [c for c in index.collections() if c["name"] == collection]
    model = existing[0]["embed_model"] if existing else (embed_model or DEFAULT_EMBEDDING_MODEL)
    if engine.catalog.get(model).task != EMBEDDING:
        raise InvalidInput(f"{model} is not a sentence-embedding model", "pick one whose task is sentence-embedding")
    index.create_collection(collection, model)
    folder = collection_folder(engine, collection)
    folder.mkdir(parents=True, exist_ok=True)
    embed = embed_texts(engine, model)
    reports = []
    for number, (raw_name, data) in enumerate(files):
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
        for start in range(0, len(pending), EMBED_BATCH):
            batch = pending[start:start + EMBED_BATCH]
            if progress:
                progress(number, len(files), f"embedding {name}: {start}/{len(pending)} passages")
            inputs = [(row["text"] if not row["heading"] or row["text"].startswith(row["heading"])
                       else f"{row['heading']}\n{row['text']}")[:MAX_EMBED_CHARS] for row in batch]
            index.store_vectors(document_id, [row["id"] for row in batch], embed(inputs))
        reports.append(FileReport(name, "embedded", len(chunks), len(pending)))
    if progress:
        progress(len(files), len(files), "done")
    return reports


def list_collections(engine) -> list[dict]:
    return index_for(engine).collections()


def list_documents(engine, collection: str) -> list[dict]:
    index = index_for(engine)
    index.collection(collection)
    return index.documents(collection)


def remove_collection(engine, collection: str) -> None:
    if not index_for(engine).remove_collection(collection):
        raise InvalidInput(f"there is no collection {collection!r}", "see `python -m llmos_core collections list`")
    shutil.rmtree(collection_folder(engine, collection), ignore_errors=True)


def remove_document(engine, collection: str, name: str) -> None:
    if not index_for(engine).remove_document(check_collection_name(collection), name):
        raise InvalidInput(f"{collection} holds no document {name!r}")
    (collection_folder(engine, collection) / safe_file_name(name)).unlink(missing_ok=True)


# ---- asking ----
@dataclass
class AskPlan:
    collection: str
    question: str
    model: str
    retrieval: Retrieval
    context: Context | None          # None: nothing matched, the model is not asked
    messages: list[dict] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return self.context is not None and bool(self.context.sources)


@dataclass
class Answer:
    text: str
    found: bool
    citations: list[dict]
    meter: dict
    stats: dict

    def to_dict(self) -> dict:
        return {"answer": self.text, "found": self.found, "citations": self.citations, "context": self.meter,
                "stats": self.stats}


def prepare(engine, collection: str, question: str, model: str, params: SamplingParams,
            history: list[dict] | None = None, top_k: int = 5) -> AskPlan:
    """Retrieve, then fit what matched into `model`'s window (counting with its own tokenizer)."""
    if not isinstance(question, str) or not question.strip():
        raise InvalidInput("the question is empty", "type a question")
    history = list(history or [])
    index = index_for(engine)
    info = index.collection(collection)
    retrieval = retrieve(index, collection, question, embed_texts(engine, info["embed_model"]), top_k)
    if not retrieval.found:
        return AskPlan(collection, question, model, retrieval, None)
    backend = engine.chat.choose_backend(model).backend
    with engine.models.use(model, backend) as resident:
        runner = engine.chat.runner(resident)
        count = lambda text: len(runner.encode([(text, False)]))       # noqa: E731
        documents = {p.chunk.document for p in retrieval.passages}
        whole = {d["name"]: index.document_text(d["id"]) for d in index.documents(collection) if d["name"] in documents}
        context = choose_context(retrieval.passages, whole, count, runner.context_tokens, params.max_new_tokens,
                                 question, history)
    if not context.sources:
        raise LLMOSError(f"no passage fits in {model}'s window of {runner.context_tokens} tokens beside the question "
                         "and history", "shorten the question, start a new conversation, or lower max new tokens")
    return AskPlan(collection, question, model, retrieval, context, build_messages(question, context, history))


def finish(plan: AskPlan, text: str, stats: dict) -> Answer:
    if plan.context is None:
        return Answer(NOT_FOUND, False, [], {}, {})
    return Answer(text, True, citations(text, plan.context), plan.context.meter.to_dict(), stats)


def answer(engine, plan: AskPlan, params: SamplingParams, on_text: Callable[[str], None] | None = None) -> Answer:
    """The whole answer (CLI, tests); the page streams engine.chat.stream itself and calls finish."""
    if plan.context is None:
        return finish(plan, "", {})
    result = engine.chat.generate(plan.model, plan.messages, params, on_text=on_text)
    return finish(plan, result.text, result.stats)
