"""/metrics: the engine in Prometheus's text format, every name prefixed llmos_.

Counters and histograms are fed as replies end (GenerationService.observers sees every reply: pages,
CLI and API alike) and as API requests are answered. Gauges are read at scrape time from the engine
itself: the queues, the memory manager, the jobs table and the monitor's latest sample, so they can
never disagree with what the pages show. One registry per engine, not prometheus_client's global one,
so two engines in one process (the tests) never collide.
"""
from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from ..generation import TokenEvent
from ..models.catalog import CAUSAL_LM

if TYPE_CHECKING:
    from ..engine import Engine

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SPEED_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
# Requests naming a model the catalog does not hold are counted under this one label: a label per name a
# client makes up would be a time series per name, for ever (2,000 names made 1 MB of metrics).
UNKNOWN_MODEL = "(unknown)"


class ApiMetrics:
    def __init__(self, engine: "Engine"):
        self.engine = engine
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("llmos_requests", "API requests answered, by model, endpoint and HTTP status",
                                ["model", "endpoint", "status"], registry=self.registry)
        self.tokens = Counter("llmos_generated_tokens", "tokens generated, by model (pages, CLI and API)",
                              ["model"], registry=self.registry)
        self.replies = Counter("llmos_replies", "replies generated, by model and how they ended",
                               ["model", "finish_reason"], registry=self.registry)
        self.ttft = Histogram("llmos_time_to_first_token_seconds", "time to first token, queueing included",
                              ["model"], buckets=TTFT_BUCKETS, registry=self.registry)
        self.speed = Histogram("llmos_tokens_per_second", "decoding speed of a reply, first token excluded",
                               ["model"], buckets=SPEED_BUCKETS, registry=self.registry)
        self.embedded = Counter("llmos_embedded_inputs", "texts embedded, by model", ["model"],
                                registry=self.registry)
        self._known: frozenset[str] = frozenset()
        self._known_at = float("-inf")
        self._known_lock = threading.Lock()
        self.registry.register(_EngineGauges(engine))
        engine.chat.observers.append(self.observe_reply)

    def observe_reply(self, model: str, event: TokenEvent) -> None:
        self.tokens.labels(model).inc(event.tokens)
        self.replies.labels(model, event.finish_reason or "unknown").inc()
        if event.ttft_s is not None:
            self.ttft.labels(model).observe(event.ttft_s)
        if event.tokens_per_s is not None:
            self.speed.labels(model).observe(event.tokens_per_s)

    def count_request(self, model: str, endpoint: str, status: int) -> None:
        self.requests.labels(self.model_label(model), endpoint, str(status)).inc()

    def model_label(self, model: str) -> str:
        """`model` when the catalog holds it, else UNKNOWN_MODEL. The names are re-read at most once a second,
        and only when a name is not among them (a model registered a moment ago)."""
        with self._known_lock:
            if model not in self._known and time.monotonic() - self._known_at > 1.0:
                self._known = frozenset(self.engine.catalog.names())
                self._known_at = time.monotonic()
            return model if model in self._known else UNKNOWN_MODEL

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def close(self) -> None:
        if self.observe_reply in self.engine.chat.observers:
            self.engine.chat.observers.remove(self.observe_reply)


class _EngineGauges:
    """A custom collector: gauges read from the engine at each scrape."""

    def __init__(self, engine: "Engine"):
        self.engine = engine

    def describe(self):
        return []   # names are only known at collect time; nothing to check at registration

    def collect(self):
        engine = self.engine
        queue = GaugeMetricFamily("llmos_queue_depth", "chat requests per model and backend, running or waiting",
                                  labels=["model", "backend", "state"])
        for name in engine.catalog.names(CAUSAL_LM):
            for backend in engine.backends:
                depth = engine.chat.queue_depth(name, backend)
                if depth["running"] or depth["waiting"]:
                    queue.add_metric([name, backend, "running"], depth["running"])
                    queue.add_metric([name, backend, "waiting"], depth["waiting"])
        yield queue

        resident = GaugeMetricFamily("llmos_resident_model_bytes", "memory a resident model takes (measured, "
                                     "plus its working memory)", labels=["model", "backend"])
        for m in engine.models.resident():
            resident.add_metric([m["name"], m["backend"]], m["measured_bytes"] + m.get("working_bytes", 0))
        yield resident
        yield from _prefix_cache_gauges(engine.models.resident())
        yield GaugeMetricFamily("llmos_memory_budget_bytes", "bytes resident models may take",
                                value=engine.models.budget)

        jobs = GaugeMetricFamily("llmos_jobs", "jobs by state", labels=["state"])
        for row in engine.store.query("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state"):
            jobs.add_metric([row["state"]], row["n"])
        yield jobs

        yield from _monitor_gauges(engine.sampler.latest())


_PREFIX_CACHE = (("entries", "llmos_prefix_cache_entries", "prompts whose KV state is kept for reuse"),
                 ("bytes", "llmos_prefix_cache_bytes", "memory those kept states take (inside the model's KV cache)"),
                 ("hit_rate", "llmos_prefix_cache_hit_rate", "share of prompts that found their start cached"),
                 ("tokens_saved", "llmos_prefix_cache_tokens_saved", "prompt tokens not evaluated again, since load"),
                 ("accepted", "llmos_prompt_lookup_accepted_tokens", "prompt-lookup guesses kept, since load"))


def _prefix_cache_gauges(resident: list[dict]):
    """Each resident model's prefix cache and prompt-lookup figures (models without one are left out, and a
    figure its runner has not: the transformers runner's cache has no prompt lookup)."""
    for key, name, text in _PREFIX_CACHE:
        family = GaugeMetricFamily(name, text, labels=["model", "backend"])
        for m in resident:
            if m.get("prefix_cache") and m["prefix_cache"].get(key) is not None:
                family.add_metric([m["name"], m["backend"]], m["prefix_cache"][key])
        yield family


def _monitor_gauges(sample: dict | None):
    """The monitor's last sample: CPU, memory and each GPU. A figure the machine lacks is left out."""
    if not sample:
        return
    cpu, mem = sample.get("cpu") or {}, sample.get("mem") or {}
    if cpu.get("total") is not None:
        yield GaugeMetricFamily("llmos_cpu_percent", "host CPU busy, all cores", value=cpu["total"])
    for key, name, text in (("used", "llmos_memory_used_bytes", "host memory in use"),
                            ("total", "llmos_memory_total_bytes", "host memory"),
                            ("swap_used", "llmos_swap_used_bytes", "swap in use")):
        if mem.get(key) is not None:
            yield GaugeMetricFamily(name, text, value=mem[key])
    gpus = sample.get("gpus") or []
    for key, name, text in (("util", "llmos_gpu_utilization_percent", "GPU busy"),
                            ("mem_used", "llmos_gpu_memory_used_bytes", "GPU memory in use"),
                            ("mem_total", "llmos_gpu_memory_total_bytes", "GPU memory")):
        family = GaugeMetricFamily(name, text, labels=["gpu", "name"])
        for gpu in gpus:
            if gpu.get(key) is not None:
                family.add_metric([str(gpu["index"]), str(gpu["name"])], gpu[key])
        yield family
