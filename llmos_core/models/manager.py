"""The memory manager: which models are resident, under a budget, with LRU eviction and idle unload.

After Ollama's scheduler: estimate before loading, measure after; the room for a new model is the
smaller of (budget - what resident models hold) and the free memory measured now; to make room,
unload idle models, least recently used first; a model in use is pinned and never evicted; if it
still cannot fit, refuse with the figures. Idle models unload after the keep-alive.
Shared by every browser session: every public method is thread-safe.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

from ..device import DeviceChoice, free_memory, release_memory
from ..errors import InsufficientMemory, LLMOSError, ModelNotFound, format_bytes
from ..settings import Settings
from ..store import Store
from .backends import Backend, Loaded
from .catalog import Catalog, ModelSpec
from .fetch import Progress

# Never plan to use the last bit of measured free memory: the OS and the server need some too.
FREE_MEMORY_RESERVE = 256 * 1024**2


@dataclass
class ResidentModel:
    name: str
    backend: str
    spec: ModelSpec
    loaded: Loaded
    estimated_bytes: int
    loaded_at: float
    load_seconds: float
    last_used: float
    pins: int = 0
    keep_alive_s: float = 600.0
    # Memory it takes on after loading, counted with it: the KV cache of transformers' continuous batching
    # (llama.cpp's shared cache is allocated at load and already in measured_bytes).
    working_bytes: int = 0
    runner_cache: Callable[[], dict] | None = None   # the figures of its runner's own prefix cache (transformers)

    @property
    def model(self):
        return self.loaded.model

    @property
    def tokenizer(self):
        return self.loaded.tokenizer

    @property
    def measured_bytes(self) -> int:
        return self.loaded.measured_bytes

    def status(self, now: float) -> dict:
        idle = 0.0 if self.pins else now - self.last_used
        return {"name": self.name, "backend": self.backend, "task": self.spec.task,
                "estimated_bytes": self.estimated_bytes, "measured_bytes": self.measured_bytes,
                "working_bytes": self.working_bytes, "in_use": self.pins, "idle_s": round(idle, 1),
                "unloads_in_s": None if self.pins else round(max(self.keep_alive_s - idle, 0.0), 1),
                "load_seconds": round(self.load_seconds, 2), **self.loaded.details,
                "prefix_cache": self.prefix_cache()}

    def prefix_cache(self) -> dict | None:
        """The model's prefix cache figures (entries, bytes, hit rate, tokens saved), None without one."""
        stats = self.runner_cache or getattr(self.loaded.model, "prefix_cache_stats", None)
        return stats() if callable(stats) else None


@dataclass
class _Pending:
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    reserved: int = 0


class ModelManager:
    def __init__(self, settings: Settings, store: Store, catalog: Catalog, device: DeviceChoice,
                 backends: dict[str, Backend], clock: Callable[[], float] = time.monotonic,
                 measure_free: Callable[[], int] | None = None):
        self.settings, self.store, self.catalog, self.device = settings, store, catalog, device
        self.backends = backends
        self.clock = clock
        self._measure_free = measure_free or (lambda: free_memory(device)[0])
        self.budget = settings.memory_budget or int(0.6 * self._measure_free())
        self._lock = threading.RLock()
        self._resident: dict[tuple[str, str], ResidentModel] = {}
        self._pending: dict[tuple[str, str], _Pending] = {}
        # One load at a time: transformers' loading is not thread-safe (two models loading at once in two
        # threads, as a side-by-side comparison does, failed with "Cannot copy out of meta tensor").
        self._loading = threading.Lock()
        self.refusals: deque[dict] = deque(maxlen=20)
        self._reaper: threading.Thread | None = None
        self._stop = threading.Event()
        # Memory others have reserved and not taken yet (the scheduler's starting jobs); the engine sets it.
        self.reserved_elsewhere: Callable[[], int] = lambda: 0

    # ---- what is resident ----
    def resident(self) -> list[dict]:
        now = self.clock()
        with self._lock:
            return [m.status(now) for m in sorted(self._resident.values(), key=lambda m: m.loaded_at)]

    def pending_bytes(self) -> int:
        """What the models being loaded now have reserved and not yet taken."""
        with self._lock:
            return sum(p.reserved for p in self._pending.values())

    def reserved_bytes(self) -> int:
        with self._lock:
            return (sum(max(m.measured_bytes, m.estimated_bytes) + m.working_bytes for m in self._resident.values())
                    + sum(p.reserved for p in self._pending.values()))

    def is_resident(self, name: str, backend: str = "transformers") -> bool:
        with self._lock:
            return (name, backend) in self._resident

    def estimate(self, name: str, backend: str = "transformers") -> int:
        return self._backend(backend).estimate(self.catalog.get(name))

    def room(self) -> int:
        """Bytes a new model may take now: min(budget left, measured free minus a reserve and minus what
        starting jobs have reserved but not yet taken)."""
        with self._lock:
            return max(0, min(self.budget - self.reserved_bytes(),
                              self._measure_free() - FREE_MEMORY_RESERVE - self.reserved_elsewhere()))

    # ---- load / use / unload ----
    def load(self, name: str, backend: str = "transformers", progress: Progress | None = None,
             cancel: threading.Event | None = None) -> ResidentModel:
        """Load `name` (or return it if resident). Concurrent calls for one model load it once."""
        key = (name, backend)
        progress = progress or (lambda fraction, message: None)
        while True:
            with self._lock:
                if key in self._resident:
                    model = self._resident[key]
                    model.last_used = self.clock()
                    return model
                pending = self._pending.get(key)
                if pending is None:
                    spec = self.catalog.get(name)
                    estimate = self._backend(backend).estimate(spec)
                    self._make_room(name, estimate)
                    pending = self._pending[key] = _Pending(reserved=estimate)
                    break
            pending.done.wait()   # someone else is loading it: wait, then look again
            if pending.error is not None:
                raise pending.error

        started = time.perf_counter()
        try:
            with self._loading:
                loaded = self._backend(backend).load(spec, progress, cancel)
            if estimate == 0:   # unknown before download: check the fit now, with the real figure
                with self._lock:
                    self._pending[key].reserved = 0
                    self._make_room(name, loaded.measured_bytes)
        except BaseException as exc:
            with self._lock:
                del self._pending[key]
            pending.error = exc
            pending.done.set()
            release_memory(self.device)
            if not isinstance(exc, InsufficientMemory):
                self.store.add_event("load_failed", name, f"{name} failed to load: {exc}", backend=backend)
            raise
        seconds = time.perf_counter() - started
        now = self.clock()
        model = ResidentModel(name, backend, spec, loaded, estimate or loaded.measured_bytes, now, seconds, now,
                              keep_alive_s=self.settings.keep_alive_s)
        with self._lock:
            self._resident[key] = model
            del self._pending[key]
        pending.done.set()
        self.store.add_event("load", name, f"loaded {name} ({backend}) in {seconds:.1f} s", backend=backend,
                             estimated_bytes=model.estimated_bytes, measured_bytes=model.measured_bytes)
        return model

    @contextmanager
    def use(self, name: str, backend: str = "transformers", progress: Progress | None = None) -> Iterator[ResidentModel]:
        """Pin a model for the length of a request, loading it if needed; no eviction while pinned."""
        while True:
            model = self.load(name, backend, progress)
            with self._lock:
                if self._resident.get((name, backend)) is model:   # not evicted between load and pin
                    model.pins += 1
                    break
        try:
            yield model
        finally:
            with self._lock:
                model.pins -= 1
                model.last_used = self.clock()

    def set_working_memory(self, model: ResidentModel, nbytes: int, what: str) -> None:
        """Count `nbytes` of working memory for a resident model that is in use (pinned), making room for
        what it adds by evicting idle models, or raising InsufficientMemory with the figures."""
        with self._lock:
            more = nbytes - model.working_bytes
            if more > 0:
                model.pins += 1   # never evict the model we are making room for
                try:
                    self._make_room(f"{model.name} ({what})", more)
                finally:
                    model.pins -= 1
            model.working_bytes = nbytes
        self.store.add_event("working_memory", model.name, f"{model.name} ({model.backend}): {what}, "
                             f"{nbytes / 1024**2:.0f} MB counted", backend=model.backend, working_bytes=nbytes)

    def unload(self, name: str, backend: str | None = None, reason: str = "unload") -> bool:
        """Unload one model (every backend's copy when `backend` is None). Pinned models are refused."""
        with self._lock:
            keys = [k for k in self._resident if k[0] == name and (backend is None or k[1] == backend)]
            if not keys:
                return False
            for key in keys:
                if self._resident[key].pins:
                    raise LLMOSError(f"{name} is in use by {self._resident[key].pins} request(s)",
                                     "wait for the reply to finish or stop it, then unload")
            victims = [self._resident.pop(key) for key in keys]
        for victim in victims:
            self._release(victim, reason)
        return True

    def unload_all(self) -> None:
        with self._lock:
            victims = list(self._resident.values())
            self._resident.clear()
        for victim in victims:
            self._release(victim, "shutdown")

    def _release(self, model: ResidentModel, reason: str) -> None:
        before = self._measure_free()
        self._backend(model.backend).unload(model.loaded)
        model.loaded.model = None
        release_memory(self.device)
        after = self._measure_free()   # re-measured, so the next admission sees what really came back
        self.store.add_event(reason, model.name, f"{reason}: {model.name} ({model.backend}), "
                             f"{(after - before) / 1024**2:.0f} MB came back", backend=model.backend,
                             measured_bytes=model.measured_bytes, freed_bytes=after - before)

    def _make_room(self, name: str, needed: int) -> None:
        """Called with the lock held. Evict idle models (LRU) until `needed` fits, or refuse."""
        if needed > self.budget:
            self._refuse(name, needed, self.room(), "larger than the whole memory budget")
        while needed > self.room():
            idle = [m for m in self._resident.values() if m.pins == 0]
            if not idle:
                break
            victim = min(idle, key=lambda m: m.last_used)
            del self._resident[(victim.name, victim.backend)]
            self._release(victim, "evict")
        if needed > self.room():
            in_use = [m.name for m in self._resident.values() if m.pins]
            why = f"models in use: {', '.join(in_use) or 'none'}"
            jobs = self.reserved_elsewhere()
            if jobs:
                why += f"; running jobs have {format_bytes(jobs)} reserved and not yet taken"
            self._refuse(name, needed, self.room(), why)

    def _refuse(self, name: str, needed: int, free: int, why: str) -> None:
        error = InsufficientMemory(name, needed, free, self.budget,
                                   f"{why}; unload a model, lower its dtype, take a smaller form (python -m "
                                   f"llmos_core models estimate {name} predicts each form's memory with this same "
                                   "formula), or raise LLMOS_MEMORY_BUDGET")
        refusal = {"ts": time.time(), "name": name, "needed": needed, "free": free, "budget": self.budget,
                   "reason": str(error)}
        self.refusals.appendleft(refusal)
        self.store.add_event("refuse", name, str(error), needed=needed, free=free, budget=self.budget)
        raise error

    def _backend(self, backend: str) -> Backend:
        if backend not in self.backends:
            raise ModelNotFound(f"no backend named {backend!r}", f"available: {', '.join(self.backends)}")
        return self.backends[backend]

    # ---- keep-alive ----
    def reap_idle(self) -> list[str]:
        """Unload models idle longer than their keep-alive. Returns their names."""
        now = self.clock()
        with self._lock:
            expired = [key for key, m in self._resident.items()
                       if m.pins == 0 and now - m.last_used >= m.keep_alive_s]
            victims = [self._resident.pop(key) for key in expired]
        for victim in victims:
            self._release(victim, "idle_unload")
        return [v.name for v in victims]

    def start_reaper(self, interval_s: float = 5.0) -> None:
        if self._reaper is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.reap_idle()
                except Exception:   # a failed unload must not kill the reaper; the event log has it
                    pass

        self._reaper = threading.Thread(target=loop, name="llmos-model-reaper", daemon=True)
        self._reaper.start()

    def close(self) -> None:
        self._stop.set()
        self.unload_all()
