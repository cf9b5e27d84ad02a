"""The Translator that drives a translation engine over a document's segments, and open_engine.

Engines turn a batch of masked sentences into translations: seq2seq_engine.Seq2SeqEngine (translation
models) and causal_engine.CausalLMEngine (a general LM, prompted). The Translator cuts segments into
sentences that fit the model, masks what must survive, looks in its cache (identical sentences are
translated once), sends the rest in batches, and puts it back.
"""
from __future__ import annotations

import re
import time
from bisect import bisect_right
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator, Protocol

from ..errors import InvalidInput
from . import segment as seg
from .causal_engine import CausalLMEngine
# LANGUAGES and language_name are imported from here by callers written before languages.py existed.
from .languages import LANGUAGES, check_language, detect_language, language_name  # noqa: F401
from .seq2seq_engine import Seq2SeqEngine


class TranslationEngine(Protocol):
    name: str
    max_chars: int          # longest sentence to send at once; longer ones are cut
    notes: list[str]        # what the user should know about this engine's output

    def translate_batch(self, texts: list[str], source: str, target: str) -> list[str]: ...


@contextmanager
def open_engine(engine, model_name: str, progress=None, backend: str = "auto") -> Iterator[TranslationEngine]:
    """Pin `model_name` in the engine's memory manager and wrap it as a translation engine, on the backend
    `backend` names or, for auto, the one chat would pick (llama.cpp for a GGUF model on the CPU)."""
    from ..backend_choice import choose_backend
    from ..models import llamacpp
    from ..models.catalog import SEQ2SEQ

    spec = engine.catalog.get(model_name)
    if spec.task == SEQ2SEQ:
        with engine.models.use(model_name, progress=progress) as resident:
            yield Seq2SeqEngine(resident.model, resident.tokenizer, name=model_name, location=spec.location)
        return
    choice = choose_backend(spec, backend, device_kind=engine.models.device.kind, backends=engine.models.backends,
                            llamacpp_reason=llamacpp.availability()[1])
    if choice.backend == "llamacpp":
        from .llamacpp_engine import LlamaCppEngine

        reason = choice.reason if choice.requested != "auto" else (
            "llama.cpp: a GGUF model on the CPU, its 4-bit weights read as stored; up to "
            f"{llamacpp.PARALLEL} sentences decoded together, the few-shot prompt read once per language pair")
        with engine.models.use(model_name, "llamacpp", progress=progress) as resident:
            translation_engine = LlamaCppEngine(resident, name=model_name, chat=spec.chat, reason=reason)
            try:
                yield translation_engine
            finally:
                translation_engine.stop()
        return
    with engine.models.use(model_name, choice.backend, progress=progress) as resident:
        causal = CausalLMEngine(resident.model, resident.tokenizer, name=model_name, chat=spec.chat)
        causal.backend, causal.reason = choice.backend, choice.reason
        yield causal


@dataclass
class TranslationStats:
    source: str = ""
    detected: bool = False
    segments: int = 0
    sentences: int = 0          # sentence pieces in the document
    unique: int = 0             # distinct pieces that needed the model
    cached: int = 0             # pieces answered from the cache
    from_memory: int = 0        # segments answered from the translation memory (a person's corrections)
    glossary_terms: int = 0     # glossary terms in force: the saved ones of the pair and the request's own
    batches: int = 0
    repaired: int = 0           # placeholders the model lost or repeated, put right
    retried: int = 0            # sentences whose placeholders the model broke, translated again run by run
    kept_source: list[int] = field(default_factory=list)   # segments holding a sentence left in the source
    empty: int = 0              # sentences the model answered with nothing: kept in the source language
    backend: str = ""           # what ran the model: transformers, transformers-int8, llamacpp
    backend_reason: str = ""    # why that one (auto's choice, in a sentence)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


Progress = Callable[[int, int, float | None], None]   # (segments done, total, seconds left or None)


@dataclass
class _Piece:
    masked: seg.Masked | None   # None: nothing to translate (spaces, numbers, tags only)
    text: str
    space: str


class Translator:
    def __init__(self, engine: TranslationEngine, target: str, source: str = "auto",
                 glossary: dict[str, str] | None = None, batch_size: int = 8, cache: dict | None = None,
                 memory=None, saved_glossary=None):
        self.engine = engine
        self.target = check_language(target, "target language")
        self.source = "auto" if (source or "auto") == "auto" else check_language(source, "source language")
        self.glossary = dict(glossary or {})
        self._glossary_re = seg.compile_glossary(self.glossary)
        # An engine that batches continuously (llama.cpp: a freed row's slot takes the next sentence at once)
        # is given more rows per call than it decodes at a time, so no step waits for a batch's longest row.
        self.batch_size = max(1, int(batch_size), getattr(engine, "rows_per_call", 1))
        self.cache: dict[str, str] = {} if cache is None else cache
        self.memory = memory          # a TranslationMemory: corrected segments, reused before the model
        self.saved_glossary = saved_glossary   # a glossary.Glossary: saved terms of the pair, under the given ones
        self.stats = TranslationStats()

    def resolve_source(self, texts: list[str]) -> str:
        if self.source == "auto":
            self.source, _ = detect_language(" ".join(texts))
            self.stats.detected = True
        if self.source == self.target:
            raise InvalidInput(f"the source and the target are both {language_name(self.target)}",
                               "choose another target language")
        self.stats.source = self.source
        return self.source

    def _pieces(self, text: str) -> list[_Piece]:
        """A segment -> sentences that fit the model, each masked; leading/trailing space kept apart."""
        core = text.strip()
        lead = text[:len(text) - len(text.lstrip())]
        trail = text[len(text.rstrip()):]
        pieces = [_Piece(None, lead, "")] if lead else []
        for sentence, space in seg.split_sentences(core):
            parts = seg.split_long(sentence, self.engine.max_chars)
            for n, (part, part_space) in enumerate(parts):
                masked = seg.mask(part, self.glossary, self._glossary_re)
                pieces.append(_Piece(masked, part, part_space + (space if n == len(parts) - 1 else "")))
        if trail:
            pieces.append(_Piece(None, trail, ""))
        return pieces

    def translate(self, texts: list[str], progress: Progress | None = None,
                  cancelled: Callable[[], bool] | None = None) -> list[str] | None:
        """Translate every segment text; None when cancelled (nothing half-done is returned)."""
        started = time.perf_counter()
        self.resolve_source(texts)
        self.engine.check(self.source, self.target)
        if self.saved_glossary is not None:   # known once the source language is
            saved = self.saved_glossary.entries(self.source, self.target)
            # The given glossary comes last: mask() reads terms in any case, the last spelling wins.
            self.glossary = {**saved, **self.glossary}
            self._glossary_re = seg.compile_glossary(self.glossary)
        self.stats.glossary_terms = len({term.casefold() for term in self.glossary})
        self.stats.notes = list(self.engine.notes)
        self.stats.backend = getattr(self.engine, "backend", "transformers")
        self.stats.backend_reason = getattr(self.engine, "reason", "")
        remembered = self.memory.entries(self.source, self.target) if self.memory is not None else {}
        self.stats.from_memory = sum(t in remembered for t in texts)
        per_segment = [[] if t in remembered else self._pieces(t) for t in texts]
        self.stats.segments = len(texts)
        # Distinct masked sentences not in the cache, in document order; and, for progress, the
        # position of each segment's last new sentence in that order.
        todo: list[str] = []
        position: dict[str, int] = {}
        last_needed: list[int] = []
        for pieces in per_segment:
            last = -1
            for piece in pieces:
                if piece.masked is None or not _needs_model(piece.masked.text):
                    continue
                self.stats.sentences += 1
                key = piece.masked.text
                if key in self.cache:
                    self.stats.cached += 1
                    continue
                if key not in position:
                    position[key] = len(todo)
                    todo.append(key)
                else:
                    self.stats.cached += 1
                last = max(last, position[key])
            last_needed.append(last)
        self.stats.unique = len(todo)
        finish_order = sorted(last_needed)
        total = len(texts)
        if progress:
            progress(bisect_right(finish_order, -1), total, None)
        done = 0
        translate_started = time.perf_counter()
        while done < len(todo):
            if cancelled and cancelled():
                return None
            batch = todo[done:done + self.batch_size]
            for key, out in zip(batch, self.engine.translate_batch(batch, self.source, self.target)):
                self.cache[key] = out
            self.stats.batches += 1
            done += len(batch)
            if progress:
                elapsed = time.perf_counter() - translate_started
                progress(bisect_right(finish_order, done - 1), total, elapsed / done * (len(todo) - done))
        if not self._enforce_placeholders(todo, cancelled):
            return None
        results = []
        for index, (source, pieces) in enumerate(zip(texts, per_segment)):
            text, kept = (remembered[source], False) if source in remembered else self._assemble(pieces)
            results.append(text)
            if kept:
                self.stats.kept_source.append(index)
        if self.stats.kept_source:
            self.stats.notes.append(
                f"{len(self.stats.kept_source)} segment(s) kept in the source language, marked in the preview: "
                "the model broke their ⟦n⟧ formatting marks twice (segments "
                + ", ".join(str(i + 1) for i in self.stats.kept_source[:20]) + ")")
        self.stats.seconds = round(time.perf_counter() - started, 3)
        return results

    def _enforce_placeholders(self, keys: list[str], cancelled: Callable[[], bool] | None) -> bool:
        """Every translation holds exactly its source's placeholders, in order. A sentence that breaks this
        is tried once more, differently (the same prompt would give the same greedy answer): its text runs
        between placeholders are translated on their own and joined around the placeholders in source
        order. If a run still brings a stray mark, the sentence stays in the source language and its
        segment is listed in stats.kept_source. False when cancelled."""
        broken = [k for k in keys if not seg.placeholders_intact(self.cache[k], k)]
        self.stats.retried = len(broken)
        parts = {key: seg.split_at_placeholders(key) for key in broken}
        runs = list(dict.fromkeys(p for key in broken for p in parts[key]
                                  if not seg.PLACEHOLDER.fullmatch(p) and _needs_model(p)))
        translated: dict[str, str] = {}
        for start in range(0, len(runs), self.batch_size):
            if cancelled and cancelled():
                return False
            batch = runs[start:start + self.batch_size]
            translated.update(zip(batch, self.engine.translate_batch(batch, self.source, self.target)))
            self.stats.batches += 1
        for key in broken:
            joined = []
            for part in parts[key]:
                answer = translated.get(part, "").strip()
                # a run keeps the spaces around it in the source (the model's answer has none)
                joined.append(part[:len(part) - len(part.lstrip())] + answer + part[len(part.rstrip()):]
                              if answer else part)
            retry = "".join(joined)
            self.cache[key] = retry if seg.placeholders_intact(retry, key) else _KEPT + key
        return True

    def _assemble(self, pieces: list[_Piece]) -> tuple[str, bool]:
        """A segment's translation, and whether a sentence of it was kept in the source language."""
        out, kept = [], False
        for piece in pieces:
            if piece.masked is None:
                out.append(piece.text + piece.space)
                continue
            translated = self.cache.get(piece.masked.text, piece.masked.text) \
                if _needs_model(piece.masked.text) else piece.masked.text
            if translated.startswith(_KEPT):
                kept, translated = True, translated[len(_KEPT):]
            if not translated.strip():   # the model gave nothing: the source text beats a hole in the document
                self.stats.empty += 1
                translated = piece.masked.text
            text, repaired = seg.unmask(translated, piece.masked)
            self.stats.repaired += repaired
            out.append(text + piece.space)
        return "".join(out), kept


# Marks a cached sentence kept in the source language (its placeholders could not be kept); a private-use
# character that no text, masked or translated, can hold (segment._STRAY_MARK rejects it in a translation).
_KEPT = "\ue001\ue000"


def _needs_model(masked_text: str) -> bool:
    """A letter outside placeholders: otherwise (numbers, URLs, tags only) the text is kept as it is."""
    return re.search(r"[^\W\d_]", seg.PLACEHOLDER.sub("", masked_text)) is not None
