"""Translate a document: here (short ones, with progress) or as a scheduler job (long ones), and read the
result back the same way either way; the Translate page and the `translate` command call these.

A job's upload is kept under <home>/translate/uploads, named by its content's hash, so the job does
not depend on a browser session; its result is the segments file the job wrote, read here and nowhere else.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..accounts import User, user_home
from ..errors import InvalidInput, JobError
from ..translation import documents, formats, open_engine
from ..translation.bilingual import bilingual_name, render_bilingual
from ..translation.isolation import parse_in_child
from ..translation.glossary import Glossary
from ..translation.memory import TranslationMemory
from ..translation.segment import to_display
from ..translation.term_diff import changed_terms
from ..translation.documents import ParsedDocument
from ..translation.job import job_threshold
from ..translation.translator import Translator, not_translated_message

# What the upload accepts, from the formats the documents module reads (".txt" -> "txt").
FILE_TYPES = tuple(suffix.lstrip(".") for fmt in formats.all_formats() for suffix in fmt.suffixes)


@dataclass
class TranslationRequest:
    model: str
    target: str
    source: str = "auto"
    glossary: dict[str, str] = field(default_factory=dict)
    pdf_as: str = "docx"        # a PDF comes back as docx or txt
    batch_size: int = 8
    backend: str = "auto"       # auto | transformers | transformers-int8 | llamacpp (see backend_choice.py)


@dataclass
class TranslatedFile:
    """A document ready to download or write: its bytes, file name and MIME type."""
    data: bytes
    file_name: str
    mime: str


@dataclass
class TranslationResult:
    """The original document and, segment by segment, its sources and translations (the page lets the
    user edit the translations before rendering)."""
    name: str
    data: bytes
    pdf_as: str
    target: str
    sources: list[str]
    translations: list[str]
    stats: dict
    job: int | None = None

    @property
    def untranslated(self) -> list[int]:
        """The segments (from 0) kept in the source language. Stats saved before issue 28 held them as
        the list `kept_source`; now `kept_source` is their count and `kept_segments` the list."""
        kept = self.stats.get("kept_segments", self.stats.get("kept_source", []))
        return list(kept) if isinstance(kept, list) else []

    @property
    def not_translated(self) -> str:
        """"N segments not translated", or "" when every segment was."""
        return not_translated_message(len(self.untranslated)) if self.untranslated else ""

    def render(self, translations: list[str] | None = None, max_bytes: int = documents.DEFAULT_MAX_BYTES,
               parsed: documents.ParsedDocument | None = None, bilingual: bool = False) -> TranslatedFile:
        """The translated document, with `translations` (edited ones) in place of the model's. `parsed`: the
        source as already parsed (the page keeps it per upload); else it is parsed again in a child process.
        bilingual: source and translation together (bilingual.py)."""
        texts = self.translations if translations is None else translations
        doc = parsed or parse_in_child(self.data, self.name, max_bytes, self.pdf_as)
        if len(texts) != len(doc.segments):
            raise InvalidInput("the preview lost some rows", "translate the document again")
        if bilingual:
            return TranslatedFile(render_bilingual(doc, texts, self.untranslated), bilingual_name(doc), doc.mime)
        return TranslatedFile(doc.render(texts), doc.output_name, doc.mime)


def runs_as_job(doc: ParsedDocument) -> bool:
    """Long documents run as a job: they outlive the page and do not hold a browser session."""
    return len(doc.segments) > job_threshold()


def translate_here(engine, actor: User, doc: ParsedDocument, request: TranslationRequest,
                   progress: Callable[[int, int, float | None], None] | None = None,
                   load_progress: Callable[[float, str], None] | None = None) -> TranslationResult:
    """Translate in this process; `progress(done, total, eta_s)` after each batch."""
    with open_engine(engine, request.model, progress=load_progress, backend=request.backend) as model:
        translator = Translator(model, request.target, request.source, request.glossary,
                                batch_size=request.batch_size, memory=TranslationMemory.for_home(_home(engine, actor)),
                                saved_glossary=Glossary.for_home(_home(engine, actor)))
        texts = translator.translate(doc.texts(), progress)
    return TranslationResult(doc.name, doc.data, request.pdf_as, request.target, doc.texts(), texts,
                             translator.stats.to_dict())


def submit_upload(engine, actor: User, doc: ParsedDocument, request: TranslationRequest, origin: str = "local") -> int:
    """Keep the upload under the data folder and queue a translate job for it; returns the job id."""
    uploads = engine.settings.uploads_dir   # retention.py prunes what no job names any more
    uploads.mkdir(parents=True, exist_ok=True)
    path = uploads / f"{hashlib.sha256(doc.data).hexdigest()[:16]}-{Path(doc.name).name}"
    documents.write_output(path, doc.data)
    return engine.scheduler.for_user(actor).submit("translate", {
        "input": str(path), "filename": doc.name, "target": request.target, "source": request.source,
        "model": request.model, "glossary": request.glossary, "pdf_output": request.pdf_as}, origin=origin)


def read_job_result(job: dict) -> TranslationResult:
    """A finished translate job (as the scheduler returns it) -> its result."""
    result, params = job.get("result") or {}, job["params"]
    if job["state"] != "succeeded" or "segments_file" not in result:
        raise JobError(f"job {job['id']} has no translation to show ({job['state']})")
    saved = json.loads(Path(result["segments_file"]).read_text(encoding="utf-8"))
    return TranslationResult(params["filename"], Path(params["input"]).read_bytes(), params.get("pdf_output", "docx"),
                             params["target"], saved["sources"], saved["translations"], saved["stats"], job["id"])


def remember_corrections(engine, actor: User, result: TranslationResult, corrected: list[str]) -> int:
    """The rows a person changed in the editor go into the translation memory, so later documents reuse
    them before the model (exact match). Returns how many entries were new or changed."""
    if len(corrected) != len(result.translations):
        raise InvalidInput("the preview lost some rows", "translate the document again")
    changed = {source: fixed for source, model, fixed in zip(result.sources, result.translations, corrected)
               if fixed != model}
    source = result.stats.get("source") or ""
    if not source or not changed:
        return 0
    return TranslationMemory.for_home(_home(engine, actor)).add(source, result.target, changed)


# ---- corrected terms -> the saved glossary (glossary.py), which later translations of the pair mask ----
MAX_SUGGESTIONS = 50


@dataclass(frozen=True)
class TermSuggestion:
    row: int        # the segment, from 0
    source: str     # the source words, "" when they could not be found in the segment (the person types them)
    target: str     # the words the person put in


def suggest_glossary_terms(result: TranslationResult, corrected: list[str]) -> list[TermSuggestion]:
    """The terms changed in the corrected rows (a word-level diff against the machine's translation),
    aligned to their source words where they can be found; each pair once, in row order."""
    if len(corrected) != len(result.translations):
        raise InvalidInput("the preview lost some rows", "translate the document again")
    found: dict[tuple[str, str], TermSuggestion] = {}
    for row, (source, machine, fixed) in enumerate(zip(result.sources, result.translations, corrected)):
        if fixed != machine:
            for pair in changed_terms(to_display(source), to_display(machine), to_display(fixed)):
                found.setdefault((pair.source, pair.target), TermSuggestion(row, pair.source, pair.target))
    return list(found.values())[:MAX_SUGGESTIONS]


def result_languages(result: TranslationResult) -> tuple[str, str]:
    """The language pair a result was translated in (the source as detected when it was "auto")."""
    source = result.stats.get("source") or ""
    if not source:
        raise InvalidInput("the source language of this translation is not known", "translate the document again")
    return source, result.target


def add_to_glossary(engine, actor: User, result: TranslationResult, term: str, translation: str) -> str:
    """Save a term pair in the glossary of the result's language pair: "added", "updated" (the term was
    there, in any case) or "unchanged"."""
    source, target = result_languages(result)
    return Glossary.for_home(_home(engine, actor)).put(source, target, term, translation)


def saved_glossary(engine, actor: User, source: str, target: str) -> dict[str, str]:
    return Glossary.for_home(_home(engine, actor)).entries(source, target)


def remove_from_glossary(engine, actor: User, source: str, target: str, terms: list[str]) -> int:
    return Glossary.for_home(_home(engine, actor)).remove(source, target, terms)


def _home(engine, actor: User):
    """Where the actor's translation memory and glossary live (accounts/ownership.py)."""
    return user_home(engine.settings.home, actor)
