"""Training data files: the ones kept under the data folder, an upload, and what a file holds; and a
training set made from documents (continued pre-training), with a preview of the formatted examples.

Uploads are kept (named by content hash) so a queued job survives a page refresh; the Train page lists
them and reads the one picked, with the column mapping of a CSV or JSONL file. Documents (txt, md, docx,
pdf, html) are parsed in the isolated child, like the Translate page's, cleaned and cut into chunks of a
chosen number of the model's tokens (training/chunks.py), then kept as a JSONL of texts.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from ..accounts import User
from ..accounts.ownership import user_home
from ..errors import InvalidInput
from ..models import fetch
from ..models.catalog import Catalog
from ..rag.chunking import document_blocks
from ..store import Store
from ..training import chunks as chunklib
from ..training import data as datalib
from ..training.model import base_folder, load_tokenizer
from ..translation.isolation import parse_in_child

# What the uploader accepts (".jsonl" -> "jsonl").
FILE_TYPES = tuple(suffix.lstrip(".") for suffix in datalib.SUFFIXES)
# Documents a continued pre-training set is made from (parsed by the translation parsers).
DOCUMENT_TYPES = ("txt", "md", "docx", "pdf", "html", "htm")
MAX_DOCUMENTS = 20


@dataclass
class DatasetFile:
    name: str
    path: Path

    @property
    def has_columns(self) -> bool:
        """CSV and JSONL name their fields; the page lets the user map them."""
        return self.path.suffix in (".csv", ".jsonl")


def _folder(settings, actor: User) -> Path:
    """The actor's own data files (another user's are never listed or found by name)."""
    return datalib.datasets_dir(settings, user_home(settings.home, actor))


def list_datasets(settings, actor: User) -> list[DatasetFile]:
    """The actor's kept data files, by name (case-insensitive)."""
    folder = _folder(settings, actor)
    if not folder.is_dir():
        return []
    paths = sorted((p for p in folder.iterdir() if p.suffix in datalib.SUFFIXES), key=lambda p: p.name.lower())
    return [DatasetFile(p.name, p) for p in paths]


def upload_dataset(settings, actor: User, filename: str, data: bytes) -> DatasetFile:
    """Check and keep an upload (size, format) among the actor's data files; the same bytes twice keep one copy."""
    path = datalib.save_upload(settings, filename, data, user_home(settings.home, actor))
    return DatasetFile(path.name, path)


def find_dataset(settings, actor: User, name: str) -> DatasetFile:
    return DatasetFile(name, _folder(settings, actor) / Path(name).name)   # a name, never a path elsewhere


def columns(dataset: DatasetFile) -> list[str]:
    return datalib.load_columns(dataset.path) if dataset.has_columns else []


def read_dataset(dataset: DatasetFile, mapping: dict | None = None) -> datalib.Dataset:
    """Read and check every row: InvalidInput names the line that is wrong."""
    return datalib.load(dataset.path, mapping or {})


# ---------------------------------------------------------------- documents -> continued pre-training


@dataclass
class Documents:
    """The paragraphs of one or more parsed documents, in order."""
    names: list[str]
    paragraphs: list[str]


def read_documents(settings, files: list[tuple[str, bytes]]) -> Documents:
    """Parse each upload in the isolated child (CPU and memory capped); InvalidInput names the file that fails."""
    if not files:
        raise InvalidInput("no document to read", "upload one or more txt, md, docx, pdf or html files")
    if len(files) > MAX_DOCUMENTS:
        raise InvalidInput(f"{len(files)} documents at once is more than {MAX_DOCUMENTS}",
                           "make the training set in parts, or join the documents first")
    names, paragraphs = [], []
    for name, data in files:
        name = Path(str(name).replace("\\", "/")).name
        if Path(name).suffix.lower().lstrip(".") not in DOCUMENT_TYPES:
            raise InvalidInput(f"{name} is not a document this can read", "upload txt, md, docx, pdf or html")
        doc = parse_in_child(data, name, settings.max_upload_mb * 1024**2, pdf_output="txt")
        names.append(name)
        paragraphs += [block.text for block in document_blocks(doc)]
    return Documents(names, paragraphs)


_tokenizers: dict[tuple, object] = {}
_tokenizers_lock = threading.Lock()


def model_tokenizer(settings, model: str, progress=None):
    """The tokenizer a run on `model` trains with (the model is converted first if it never was)."""
    catalog = Catalog(Store(settings.db_path))
    folder = base_folder(catalog.get(model), settings, catalog, progress)
    key = (str(folder), folder.stat().st_mtime)
    with _tokenizers_lock:
        if key not in _tokenizers:
            _tokenizers[key] = load_tokenizer(folder)
        return _tokenizers[key]


def tokenizer_ready(settings, model: str) -> bool:
    """Whether `model`'s tokenizer can be read now, without converting the model first (which takes a minute)."""
    catalog = Catalog(Store(settings.db_path))
    spec = catalog.get(model)
    while spec.data.get("adapter"):
        spec = catalog.get(spec.data["base_model"])
    return fetch.is_ready(spec, settings)


def chunk_documents(settings, documents: Documents, model: str, chunk_tokens: int) -> chunklib.Chunks:
    return chunklib.make_chunks(documents.paragraphs, model_tokenizer(settings, model), int(chunk_tokens))


def save_chunks(settings, actor: User, documents: Documents, chunks: chunklib.Chunks,
                chunk_tokens: int) -> DatasetFile:
    """Keep the chunks as a JSONL of {"text"} among the actor's data files (a text set: packed into blocks)."""
    return upload_dataset(settings, actor, chunklib.chunks_file_name(documents.names, chunk_tokens), chunks.to_jsonl())


# ---------------------------------------------------------------- what the model will see


def formatted_examples(settings, dataset: datalib.Dataset, model: str, n: int = 2) -> list[dict]:
    """The first examples as the model is trained on them: {"prompt": text it reads (not trained on),
    "response": text it learns}; a text example is all response."""
    tokenizer = model_tokenizer(settings, model)
    out = []
    for example in dataset.examples[:n]:
        if dataset.shape == datalib.TEXT:
            out.append({"prompt": "", "response": example["text"]})
        else:
            prompt, response, _ = datalib.to_prompt_response(tokenizer, example)
            out.append({"prompt": prompt, "response": response})
    return out
