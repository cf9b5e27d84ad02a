"""The process-wide Engine: one per data folder per process, owning the store, catalog and memory manager.

The first engine to take `engine.lock` in a data folder is the primary: it serves the control
socket (so the CLI reaches the models it holds) and runs the job scheduler. Others still work
(their own models, the same database) and say who the primary is.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

from . import control, retention
from .accounts import Accounts, adopt_local
from .alerts import AlertTracker
from .device import DeviceChoice, choose_device
from .errors import InvalidInput, LLMOSError
from .comparisons import Comparisons
from .conversations import Conversations
from .cluster import ClusterMonitor
from .embeddings import EmbeddingService
from .feedback.store import FeedbackStore
from .generation import GenerationService, SamplingParams, TokenEvent
from .jobs.scheduler import JobScheduler
from .locks import take_lock
from .models.backends import TransformersBackend
from .models.catalog import Catalog
from .models.llamacpp import LlamaCppBackend, availability as llamacpp_availability
from .models.manager import ModelManager
from .monitor import Sampler
from .monitor_feed import MonitorFeed
from .paths import secure_folder
from .settings import Settings
from .store import Store


class Engine:
    def __init__(self, settings: Settings | None = None, *, primary: bool = True, start_threads: bool = True):
        self.settings = settings or Settings.from_env()
        self.home = self.settings.home
        secure_folder(self.home)   # 0700, created so or tightened: it holds conversations, uploads, models
        self.store = Store(self.settings.db_path)
        self.catalog = Catalog(self.store)
        # Users, keys and limits; the first admin made inherits what the local admin owned (accounts/).
        self.accounts = Accounts(self.store, self.settings.api_key,
                                 on_first_admin=lambda admin: adopt_local(self.store, self.home, admin))
        self.device: DeviceChoice = choose_device(self.settings.device, self.settings.dtype)
        self.backends = {"transformers": TransformersBackend(self.settings, self.device, self.catalog)}
        # llama.cpp only where its binding imports; the Models page shows the reason when it does not.
        self.llamacpp_available, self.llamacpp_reason = llamacpp_availability()
        if self.llamacpp_available:
            self.backends["llamacpp"] = LlamaCppBackend(self.settings)
        if self.device.kind == "cpu":   # int8 weights for batching on the CPU (models/int8.py says why)
            from .models.int8 import Int8TransformersBackend, int8_supported
            if int8_supported():
                self.backends["transformers-int8"] = Int8TransformersBackend(self.settings, self.device, self.catalog)
        self.models = ModelManager(self.settings, self.store, self.catalog, self.device, self.backends)
        self.chat = GenerationService(self.models)   # chat replies: queue, batching, streaming
        self.embeddings = EmbeddingService(self.models)   # /v1/embeddings, under the same memory manager
        self.conversations = Conversations(self.store)
        self.comparisons = Comparisons(self.store)   # side-by-side answers (usecases/compare.py)
        self.feedback = FeedbackStore(self.store)    # thumbs, edits, Compare choices (usecases/feedback.py)
        # The HTTP API sits on the engine: the process entry that serves it (serve, the app) starts it with
        # llmos_core/api/server.py, which records it here; the engine only stops it on close (no import).
        self.api = None          # the running API server, when this process serves one
        self.api_error = ""      # why it is not running, when it was asked for and could not start
        self.started_at = time.time()
        self._lock_handle = None
        self.control = control.ControlServer(self.socket_path)
        self.is_primary = primary and self._take_lock()
        if self.is_primary:
            self._register_control()
            self.control.start()
        # One sampler per engine (never per browser session); only the primary writes the history.
        self.sampler = Sampler(self.store, server_pid=os.getpid(), resident=self.models.resident,
                               primary_pid=self.primary_pid, persist=self.is_primary,
                               housekeeping=self._prune if self.is_primary else None)
        # Alerts are recorded by the primary only: two engines on one folder would write each one twice.
        self.alerts = AlertTracker(self.store if self.is_primary else None)
        self.sampler.listeners.append(self.alerts.check)
        self._feed: MonitorFeed | None = None     # the Monitor page's live feed, made for its first viewer
        self._feed_lock = threading.Lock()
        # Every engine can submit/cancel/list jobs through the store; only the primary runs the loop.
        self.scheduler = JobScheduler(self.settings, self.store, models=self.models, model_device=self.device.kind,
                                      cuda_available=self.device.kind == "cuda")
        self.models.reserved_elsewhere = lambda: self.scheduler.reserved_by_jobs(self.device.kind)
        self.scheduler.limits_for = self.accounts.limits_for
        self.chat.limits_for = self.accounts.limits_for
        # With LLMOS_CLUSTER set, the pages' cluster view reads Ray's nodes through this (None: this machine).
        self.cluster = ClusterMonitor(self.settings.cluster) if self.settings.cluster else None
        if start_threads:
            self.models.start_reaper()
            if self.is_primary:
                self.scheduler.start()
            self.sampler.start()

    def monitor_feed(self) -> MonitorFeed | None:
        """The live feed file the Monitor's charts fetch each second, made on the first viewer's visit (no
        viewer, nothing written); a sampler swapped in (the tests do) gets a feed of its own. None where no
        temporary folder can be written: the charts then move by page reruns, as before."""
        with self._feed_lock:
            if self._feed is None or self._feed.sampler is not self.sampler:
                if self._feed is not None:
                    self._feed.close()
                    self._feed = None
                try:
                    self._feed = MonitorFeed(self.sampler)
                except OSError as exc:
                    logging.getLogger(__name__).warning("no live feed for the monitor: %s", exc)
            return self._feed

    @property
    def socket_path(self) -> Path:
        return self.home / "engine.sock"

    def _take_lock(self) -> bool:
        self._lock_handle = take_lock(self.home / "engine.lock")
        return self._lock_handle is not None

    def primary_pid(self) -> int | None:
        try:
            return int((self.home / "engine.lock").read_text().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def _register_control(self) -> None:
        c = self.control
        c.register("ping", lambda progress: {"pid": os.getpid(), "started": self.started_at})
        c.register("ps", lambda progress: self.models.resident())
        c.register("status", lambda progress: self.status())
        c.register("monitor", lambda progress: self.sampler.latest())

        def load(progress, name: str, backend: str = "transformers"):
            model = self.models.load(name, backend, progress)
            return model.status(self.models.clock())

        def unload(progress, name: str, backend: str | None = None):
            if not self.models.unload(name, backend):
                raise LLMOSError(f"{name} is not loaded", "see `python -m llmos_core models ps`")
            return {"unloaded": name}

        def chat(progress, model: str, messages: list[dict], params: dict, backend: str = "auto",
                 continue_final: bool = False):
            """`python -m llmos_core chat` streams through here: each event goes to the client as a progress
            line (message = JSON of text/queued); a client that hangs up makes `progress` raise, which
            closes the stream and so cancels the generation."""
            known = set(SamplingParams.__dataclass_fields__)
            if not isinstance(params, dict) or not set(params) <= known:
                raise InvalidInput(f"params must be an object of sampling settings, got {params!r}"[:200],
                                   f"known settings: {', '.join(sorted(known))}")
            parts, last = [], TokenEvent()
            stream = self.chat.stream(model, messages, SamplingParams(**params), backend, None, continue_final)
            try:
                for event in stream:
                    if event.text or event.queued is not None:
                        progress(event.tokens, json.dumps({"text": event.text, "queued": event.queued}))
                    parts.append(event.text)
                    last = event
            finally:
                stream.close()
            return {"text": "".join(parts), "stats": last.stats(), "model": model, "params": params}

        c.register("chat", chat)
        c.register("load", load)
        c.register("unload", unload)

    def status(self) -> dict:
        return {"pid": os.getpid(), "primary": self.is_primary, "home": str(self.home),
                "device": {"kind": self.device.kind, "name": self.device.name, "dtype": self.device.dtype,
                           "reason": self.device.reason},
                "budget_bytes": self.models.budget, "reserved_bytes": self.models.reserved_bytes(),
                "room_bytes": self.models.room(), "resident": self.models.resident(),
                "monitor": self.sampler.status()}

    def _prune(self) -> dict:
        """Old events, usage samples and unused uploads go (retention.py); the primary does it hourly."""
        removed = retention.prune(self.store, self.settings)
        if any(removed.values()):
            self.store.add_event("prune", "retention", "pruned " + ", ".join(f"{n} {k}" for k, n in removed.items()),
                                 **removed)
        return removed

    def threads_alive(self) -> dict[str, bool]:
        """Whether the engine's background threads run: Home shows it (a dead one means a restart is due)."""
        return {"scheduler": self.scheduler.is_alive(), "monitor": self.sampler.running}

    def is_idle(self) -> bool:
        """Nothing resident, nothing running, no request being answered (a slow load included): an
        auto-started server may exit."""
        return not self.models.resident() and not self.scheduler.busy() and not self.control.busy()

    def close(self) -> None:
        if self.api is not None:
            self.api.stop()
            self.api = None
        self.scheduler.stop()   # running jobs go on; the next scheduler reattaches them
        self.sampler.stop()
        if self._feed is not None:
            self._feed.close()
        self.control.stop()
        self.chat.close()
        self.models.close()
        self.store.close()
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None


_engines: dict[Path, Engine] = {}
_engines_lock = threading.Lock()


def get_engine(settings: Settings | None = None) -> Engine:
    """The engine of this process for the settings' data folder, created once."""
    settings = settings or Settings.from_env()
    with _engines_lock:
        engine = _engines.get(settings.home)
        if engine is None:
            engine = _engines[settings.home] = Engine(settings)
        return engine
