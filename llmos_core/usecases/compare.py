"""Compare side by side: one prompt to two or three models at once, every answer streaming, saved to reopen.

Each answer is read in its own thread, so the requests reach the generation service together (two on one
model batch in its lane; different models decode at the same time) and a slow or failing model holds up
nobody. The caller reads one merged stream of updates and draws each answer where it belongs. When all
have ended, or the caller leaves (a Stop press), every generation is cancelled and the comparison saved
with what was written, the way a chat reply is.
"""
from __future__ import annotations

import queue
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

from ..accounts import User
from ..comparisons import Comparisons
from ..errors import InvalidInput, LLMOSError
from ..generation import SamplingParams, TokenEvent

MIN_MODELS, MAX_MODELS = 2, 3
# (model, messages, params, backend, cancel) -> the events of one reply, as GenerationService.stream yields them
Source = Callable[[str, list, SamplingParams, str, threading.Event], Iterator[TokenEvent]]
_ENDED = object()


@dataclass
class Answer:
    """One model's answer as it is written: its text so far, where it waits, how it ended."""
    index: int
    model: str
    backend: str = "auto"
    parts: list[str] = field(default_factory=list)
    last: TokenEvent = field(default_factory=TokenEvent)
    queued: int | None = None       # requests ahead of it while it waits for a slot
    error: str = ""                 # why it failed (a refusal, a model that would not load)
    ended: bool = False

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def stats(self) -> dict:
        stats = {**self.last.stats(), "model": self.model}
        if not self.last.done:
            stats["finish_reason"] = "error" if self.error else "cancelled"
        return stats

    def record(self) -> dict:
        return {"model": self.model, "text": self.text, "stats": self.stats(), "error": self.error}


def check_request(catalog, models: list[str], prompt: str) -> list[str]:
    """The models (names checked against the catalog) for a comparison of this prompt; InvalidInput if not."""
    models = [m.strip() for m in models if m and m.strip()]
    if not MIN_MODELS <= len(models) <= MAX_MODELS:
        raise InvalidInput(f"a comparison takes {MIN_MODELS} or {MAX_MODELS} models, got {len(models)}",
                           "pick two or three models (for example a base model and its fine-tune)")
    if not prompt.strip():
        raise InvalidInput("the prompt is empty", "type something first")
    for name in models:
        catalog.get(name)   # an unknown name is refused here, before any model loads
    return models


class Comparison:
    """Made by `start_comparison` (or directly, with another source, by the CLI); then `with c.running() as updates`."""

    def __init__(self, models: list[str], prompt: str, params: SamplingParams, system: str, source: Source,
                 comparisons: Comparisons, backends: list[str] | None = None, *, actor: User):
        self.prompt, self.params, self.system, self.actor = prompt, params, system, actor
        self.source, self.comparisons = source, comparisons
        backends = backends or ["auto"] * len(models)
        self.answers = [Answer(i, m, b) for i, (m, b) in enumerate(zip(models, backends))]
        self.saved_id: int | None = None     # set once `running()` has started
        self.saved = threading.Event()       # set when the answers are written (a Stop's rerun waits for it)
        self._queue: queue.Queue = queue.Queue()

    def messages(self) -> list[dict]:
        system = [{"role": "system", "content": self.system}] if self.system.strip() else []
        return system + [{"role": "user", "content": self.prompt}]

    def _pump(self, answer: Answer, cancel: threading.Event) -> None:
        """Runs in its own thread: one model's events into the shared queue, then _ENDED."""
        stream = None
        try:
            stream = self.source(answer.model, self.messages(), self.params, answer.backend, cancel)
            for event in stream:
                self._queue.put((answer, event))
                if cancel.is_set():
                    break
        except LLMOSError as exc:
            self._queue.put((answer, exc))
        except Exception as exc:   # a bug or a lost connection: this column says so, the others go on
            self._queue.put((answer, LLMOSError(f"{type(exc).__name__}: {exc}")))
        finally:
            if stream is not None:
                stream.close()     # the service's finally sets cancel and frees the slot
            self._queue.put((answer, _ENDED))

    def _updates(self) -> Iterator[Answer]:
        open_answers = len(self.answers)
        while open_answers:
            answer, item = self._queue.get()
            if item is _ENDED:
                answer.ended = True
                open_answers -= 1
            elif isinstance(item, LLMOSError):
                answer.error = item.message + (f" ({item.hint})" if item.hint else "")
            else:
                answer.last, answer.queued = item, item.queued
                if item.text:
                    answer.parts.append(item.text)
            yield answer

    @contextmanager
    def running(self) -> Iterator[Iterator[Answer]]:
        """Start every answer; iterate the updates (an Answer each time one changes) until all have ended.
        Leaving early cancels the rest; either way the comparison is saved with what was written."""
        self.saved_id = self.comparisons.create(self.actor, self.prompt, [a.model for a in self.answers],
                                                self.params.to_dict(), self.system)
        cancels = [threading.Event() for _ in self.answers]
        threads = [threading.Thread(target=self._pump, args=(answer, cancel), daemon=True,
                                    name=f"llmos-compare-{answer.model}")
                   for answer, cancel in zip(self.answers, cancels)]
        for thread in threads:
            thread.start()
        try:
            yield self._updates()
        finally:
            for cancel in cancels:
                cancel.set()
            for thread in threads:
                thread.join(timeout=30)   # a cancelled generation ends within a decoding step
            self._drain()
            try:
                self.comparisons.finish(self.saved_id, [a.record() for a in self.answers])
            finally:
                self.saved.set()

    def _drain(self) -> None:
        """After a Stop: take in what was written before the cancel reached each thread."""
        try:
            while True:
                answer, item = self._queue.get_nowait()
                if isinstance(item, TokenEvent):
                    answer.last = item
                    if item.text:
                        answer.parts.append(item.text)
        except queue.Empty:
            pass


def start_comparison(engine, actor: User, models: list[str], prompt: str, *, params: SamplingParams,
                     system: str = "") -> Comparison:
    """A comparison on this engine's generation service; backends are chosen now, so a load loads the right copy."""
    models = check_request(engine.catalog, models, prompt)
    backends = [engine.chat.choose_backend(name).backend for name in models]

    def source(model, messages, params, backend, cancel):
        return engine.chat.stream(model, messages, params, backend, cancel, user=actor)

    return Comparison(models, prompt, params, system, source, engine.comparisons, backends, actor=actor)


def models_to_load(engine, comparison: Comparison) -> list[Answer]:
    """The answers whose model is not in memory yet (the page loads them one by one, with a spinner)."""
    seen, waiting = set(), []
    for answer in comparison.answers:
        key = (answer.model, answer.backend)
        if key not in seen and not engine.models.is_resident(*key):
            seen.add(key)
            waiting.append(answer)
    return waiting


def load_model(engine, answer: Answer) -> None:
    engine.models.load(answer.model, answer.backend)
