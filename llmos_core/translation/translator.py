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
from . import alignment, segment as seg
from .causal_engine import CausalLMEngine
# LANGUAGES and language_name are imported from here by callers written before languages.py existed.
from .languages import LANGUAGES, check_language, detect_language, language_name, still_in_source  # noqa: F401
from .seq2seq_engine import Seq2SeqEngine


class TranslationEngine(Protocol):
    name: str
    max_chars: int          # longest sentence to send at once; longer ones are cut
    notes: list[str]        # what the user should know about this engine's output
    # Optional: check_output_language (True: an answer still in the source language is retried, then kept
    # and flagged; the model engines say so, test doubles that upper-case English do not) and attempts
    # (above 1: translate_batch takes attempt=1, another prompt for the retry).

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
    retried: int = 0            # sentences whose answer broke their placeholders or was still in the source language
    aligned: int = 0            # of those, marks put back into the sentence's translation by alignment
    by_runs: int = 0            # of those, translated again run by run between their placeholders
    kept_source: int = 0        # segments not translated: a sentence of theirs is kept in the source language
    kept_segments: list[int] = field(default_factory=list)   # which (from 0)
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
        # A sentence whose marks are all formatting pairs goes to the model without them (unmarked), and the
        # runs its pairs enclose go alone, in the same batches (their translations place the marks back).
        unmarked = {key: bare for key in todo if (bare := alignment.without_marks(key)) is not None}
        runs = list(dict.fromkeys(run for _, key_runs in unmarked.values() for run in key_runs))
        work = todo + runs
        alone: dict[str, str] = {}
        while done < len(work):
            if cancelled and cancelled():
                return None
            batch = work[done:done + self.batch_size]
            requests = [unmarked[key][0] if key in unmarked else key for key in batch]
            for n, out in enumerate(self.engine.translate_batch(requests, self.source, self.target), done):
                if n < len(todo):
                    self.cache[work[n]] = out
                else:
                    alone[work[n]] = out
            self.stats.batches += 1
            done += len(batch)
            if progress:
                elapsed = time.perf_counter() - translate_started
                progress(bisect_right(finish_order, min(done, len(todo)) - 1), total,
                         elapsed / done * (len(work) - done))
        if not self._put_marks_back(unmarked, alone, cancelled) or not self._check_and_repair(todo, cancelled):
            return None
        results = []
        for index, (source, pieces) in enumerate(zip(texts, per_segment)):
            text, kept = (remembered[source], False) if source in remembered else self._assemble(pieces)
            results.append(text)
            if kept:
                self.stats.kept_segments.append(index)
        self.stats.kept_source = len(self.stats.kept_segments)
        if self.stats.kept_source:
            self.stats.notes.append(
                f"{not_translated_message(self.stats.kept_source)}: kept in the source language, marked in the "
                "preview and the bilingual document; the model's answers stayed in the source language or broke "
                "their ⟦n⟧ formatting marks (segments " + ", ".join(str(i + 1) for i in self.stats.kept_segments[:20])
                + ")")
        self.stats.seconds = round(time.perf_counter() - started, 3)
        return results

    def _failed(self, key: str, answer: str) -> bool:
        """The answer breaks its source's placeholders, or is still in the source language."""
        return not seg.placeholders_intact(answer, key) or self._in_source(key, answer)

    def _in_source(self, key: str, answer: str) -> bool:
        return bool(getattr(self.engine, "check_output_language", False)) and still_in_source(
            key, answer, self.source, self.target)

    def _run(self, texts: list[str], cancelled, attempt: int = 0) -> dict[str, str] | None:
        """texts -> the engine's answers, in batches; None when cancelled."""
        answers: dict[str, str] = {}
        for start in range(0, len(texts), self.batch_size):
            if cancelled and cancelled():
                return None
            batch = texts[start:start + self.batch_size]
            out = self.engine.translate_batch(batch, self.source, self.target, **({"attempt": attempt} if attempt else {}))
            answers.update(zip(batch, out))
            self.stats.batches += 1
        return answers

    def _put_marks_back(self, unmarked: dict[str, tuple[str, list[str]]], alone: dict[str, str], cancelled) -> bool:
        """The sentences translated without their formatting marks get them back by alignment around their
        runs' translations (alignment.place_marks); one that cannot be placed, or whose answer is still in
        the source language, is translated again with its marks (the prompt with marked examples). False
        when cancelled."""
        if not unmarked:
            return True
        again = []
        for key in unmarked:
            answer = self.cache[key]
            placed = None if self._in_source(unmarked[key][0], answer) else alignment.place_marks(answer, key, alone)
            if placed is None:
                again.append(key)
            else:
                self.cache[key] = placed
        marked = self._run(again, cancelled)
        if marked is None:
            return False
        self.cache.update(marked)
        return True

    def _check_and_repair(self, keys: list[str], cancelled: Callable[[], bool] | None) -> bool:
        """Every translation holds exactly its source's placeholders, in order, and is not in the source
        language. A sentence that fails is
          1. translated again with another prompt (engines that have one: greedy decoding of the same
             prompt would give the same answer);
          2. if its answer is in the target language but its marks are broken, the marks are put back by
             alignment (alignment.place_marks, helped by the text between the marks translated alone);
          3. else translated run by run between its placeholders, the runs joined in the source's order;
          4. else kept in the source language: its segment is counted in stats.kept_source.
        False when cancelled."""
        failed = [k for k in keys if self._failed(k, self.cache[k])]
        self.stats.retried = len(failed)
        if not failed:
            return True
        answers = {k: [self.cache[k]] for k in failed}
        if getattr(self.engine, "attempts", 1) > 1:
            again = self._run(failed, cancelled, attempt=1)
            if again is None:
                return False
            for key in failed:
                answers[key].append(again[key])
                if not self._failed(key, again[key]):
                    self.cache[key] = again[key]
            failed = [k for k in failed if self._failed(k, self.cache[k])]
        parts = {key: seg.split_at_placeholders(key) for key in failed}
        runs = list(dict.fromkeys(p for key in failed for p in parts[key] if seg.PLACEHOLDER.search(key)
                                  and not seg.PLACEHOLDER.fullmatch(p) and _needs_model(p)))
        alone = self._run(runs, cancelled)
        if alone is None:
            return False
        for key in failed:
            usable = [a for a in answers[key] if a.strip() and not self._in_source(key, a)]
            placed = alignment.place_marks(usable[0], key, alone) if usable else None
            if placed is not None:
                self.cache[key], self.stats.aligned = placed, self.stats.aligned + 1
                continue
            joined = "".join(_keep_spaces(part, alone.get(part, "").strip()) for part in parts[key])
            if seg.PLACEHOLDER.search(key) and not self._failed(key, joined):
                self.cache[key], self.stats.by_runs = joined, self.stats.by_runs + 1
            else:
                self.cache[key] = _KEPT + key
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
# character that no text, masked or translated, can hold (segment.STRAY_MARK rejects it in a translation).
_KEPT = "\ue001\ue000"


def not_translated_message(count: int) -> str:
    """What the page and the CLI say of segments kept in the source language."""
    return f"{count} segment{'' if count == 1 else 's'} not translated"


def _keep_spaces(part: str, answer: str) -> str:
    """A run's translation with the spaces around the run in the source (the model's answer has none);
    the run itself where the model gave nothing."""
    return part[:len(part) - len(part.lstrip())] + answer + part[len(part.rstrip()):] if answer else part


def _needs_model(masked_text: str) -> bool:
    """A letter outside placeholders: otherwise (numbers, URLs, tags only) the text is kept as it is."""
    return re.search(r"[^\W\d_]", seg.PLACEHOLDER.sub("", masked_text)) is not None
