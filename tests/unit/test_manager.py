"""The memory manager: eviction order, pinning, idle unload, refusal, concurrent loads.

Most tests drive the real TransformersBackend on tiny models; a few use a backend with chosen sizes so
the budget arithmetic is exact.
"""
import threading
import time

import pytest

from llmos_core.device import choose_device
from llmos_core.engine import Engine
from llmos_core.errors import InsufficientMemory, LoadCancelled, ModelLoadError
from llmos_core.models.backends import Loaded
from llmos_core.models.catalog import Catalog, ModelSpec
from llmos_core.models.manager import FREE_MEMORY_RESERVE, ModelManager
from llmos_core.settings import Settings
from llmos_core.store import Store

MB = 1024**2


class SizedBackend:
    """Loads nothing heavy: each model 'takes' the bytes named in its spec; counts loads."""
    name = "transformers"

    def __init__(self, delay=0.0):
        self.loads, self.delay = [], delay

    def estimate(self, spec):
        return spec.data["bytes"]

    def load(self, spec, progress, cancel=None):
        self.loads.append(spec.name)
        time.sleep(self.delay)
        if spec.data.get("fail"):
            raise ModelLoadError(f"{spec.name} is corrupt")
        return Loaded(object(), None, spec.data["bytes"], {})

    def unload(self, loaded):
        loaded.model = None


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def sized_manager(tmp_path, budget, sizes, delay=0.0, keep_alive=600.0):
    settings = Settings(home=tmp_path / "home", memory_budget=budget, keep_alive_s=keep_alive)
    store = Store(settings.db_path)
    catalog = Catalog(store)
    for name, size in sizes.items():
        catalog.register(ModelSpec(name=name, source="local", location="/nowhere", data={"bytes": size}))
    backend = SizedBackend(delay)
    clock = Clock()
    manager = ModelManager(settings, store, catalog, choose_device("cpu"), {"transformers": backend},
                           clock=clock, measure_free=lambda: 100 * 1024 * MB)
    return manager, backend, clock, store


def test_lru_eviction_order(tmp_path):
    manager, backend, clock, store = sized_manager(tmp_path, 300 * MB, {"a": 100 * MB, "b": 100 * MB,
                                                                       "c": 100 * MB, "d": 150 * MB})
    for name in "abc":
        manager.load(name)
        clock.now += 1
    manager.load("a")            # touch a: b is now the least recently used
    clock.now += 1
    manager.load("d")            # needs 150 MB: evicts b, then c
    resident = {m["name"] for m in manager.resident()}
    assert resident == {"a", "d"}
    assert [e["subject"] for e in reversed(store.events(kinds=("evict",)))] == ["b", "c"]


def test_pinned_model_is_never_evicted_and_refusal_has_figures(tmp_path):
    manager, _, clock, store = sized_manager(tmp_path, 250 * MB, {"a": 200 * MB, "b": 100 * MB})
    with manager.use("a"):
        with pytest.raises(InsufficientMemory) as info:
            manager.load("b")
    error = info.value
    assert error.needed == 100 * MB and error.budget == 250 * MB and error.free == 50 * MB
    assert "in use: a" in error.hint
    assert manager.is_resident("a") and not manager.is_resident("b")
    assert store.events(kinds=("refuse",))[0]["subject"] == "b"
    manager.load("b")            # a is idle now: evicted to make room
    assert [m["name"] for m in manager.resident()] == ["b"]


def test_memory_reserved_by_starting_jobs_is_kept_from_models(tmp_path):
    # 100 GB measured free, but a starting training job has reserved all but 300 MB (+ the reserve) of it.
    manager, _, _, _ = sized_manager(tmp_path, 10 * 1024 * MB, {"a": 200 * MB, "b": 400 * MB})
    manager.reserved_elsewhere = lambda: 100 * 1024 * MB - FREE_MEMORY_RESERVE - 300 * MB
    assert manager.room() == 300 * MB
    manager.load("a")
    with pytest.raises(InsufficientMemory) as info:
        manager.load("b")
    assert "running jobs have" in info.value.hint and "reserved" in info.value.hint


def test_working_memory_is_counted_and_makes_room_or_is_refused(tmp_path):
    manager, _, clock, _ = sized_manager(tmp_path, 300 * MB, {"a": 100 * MB, "b": 100 * MB})
    manager.load("b")
    clock.now += 1
    a = manager.load("a")
    manager.set_working_memory(a, 150 * MB, "batching cache")   # evicts the idle b, never a itself
    assert manager.is_resident("a") and not manager.is_resident("b")
    assert manager.reserved_bytes() == 250 * MB and manager.resident()[0]["working_bytes"] == 150 * MB
    with pytest.raises(InsufficientMemory, match="batching cache"):
        manager.set_working_memory(a, 300 * MB, "batching cache")
    assert a.working_bytes == 150 * MB


def test_larger_than_budget_is_refused_without_evicting(tmp_path):
    manager, _, _, _ = sized_manager(tmp_path, 100 * MB, {"small": 50 * MB, "huge": 500 * MB})
    manager.load("small")
    with pytest.raises(InsufficientMemory, match="needs 500.0 MB"):
        manager.load("huge")
    assert manager.is_resident("small")
    assert manager.refusals[0]["name"] == "huge"


def test_idle_models_unload_after_keep_alive(tmp_path):
    manager, _, clock, store = sized_manager(tmp_path, 500 * MB, {"a": 10 * MB, "b": 10 * MB}, keep_alive=60)
    manager.load("a")
    clock.now += 30
    manager.load("b")
    with manager.use("a"):
        clock.now += 45           # a pinned (in use); b idle 45 s
        assert manager.reap_idle() == []
        clock.now += 20           # b idle 65 s
        assert manager.reap_idle() == ["b"]
    clock.now += 61
    assert manager.reap_idle() == ["a"]
    assert {e["subject"] for e in store.events(kinds=("idle_unload",))} == {"a", "b"}


def test_concurrent_loads_of_one_model_load_it_once(tmp_path):
    manager, backend, _, _ = sized_manager(tmp_path, 500 * MB, {"a": 10 * MB}, delay=0.3)
    results = []
    threads = [threading.Thread(target=lambda: results.append(manager.load("a"))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert backend.loads == ["a"]
    assert len({id(r) for r in results}) == 1


def test_failed_load_leaves_memory_and_catalog_as_they_were(tmp_path):
    manager, _, _, store = sized_manager(tmp_path, 500 * MB, {"ok": 10 * MB})
    manager.catalog.register(ModelSpec(name="bad", source="local", location="/x", data={"bytes": 10, "fail": True}))
    manager.load("ok")
    with pytest.raises(ModelLoadError):
        manager.load("bad")
    assert [m["name"] for m in manager.resident()] == ["ok"]
    assert manager.reserved_bytes() == 10 * MB
    assert store.events(kinds=("load_failed",))[0]["subject"] == "bad"
    with pytest.raises(ModelLoadError):   # and it can be tried again, not stuck "loading"
        manager.load("bad")


def test_unload_refuses_a_model_in_use(tmp_path):
    manager, _, _, _ = sized_manager(tmp_path, 500 * MB, {"a": 10 * MB})
    with manager.use("a"):
        with pytest.raises(Exception, match="in use"):
            manager.unload("a")
    assert manager.unload("a") is True
    assert manager.unload("a") is False


# ---- the real load path, tiny models ----

def test_real_load_measures_and_estimates_tiny_models(home, tiny_causal, tiny_seq2seq):
    engine = Engine(Settings.from_env(), start_threads=False)
    try:
        for folder, task in ((tiny_causal, "causal-lm"), (tiny_seq2seq, "seq2seq")):
            spec = engine.catalog.register(engine.catalog.resolve(str(folder)))
            assert spec.task == task
            estimate = engine.models.estimate(spec.name)
            model = engine.models.load(spec.name)
            assert model.measured_bytes > 0
            assert model.estimated_bytes == estimate >= model.measured_bytes   # estimate includes overhead
            assert type(model.model).__name__.endswith(("ForCausalLM", "ForConditionalGeneration"))
        ps = {m["name"]: m for m in engine.models.resident()}
        assert len(ps) == 2 and all(m["device"] == "cpu" for m in ps.values())
        engine.models.unload(next(iter(ps)))
        assert len(engine.models.resident()) == 1
        kinds = [e["kind"] for e in engine.store.events()]
        assert kinds.count("load") == 2 and "unload" in kinds
    finally:
        engine.close()


def test_cancelled_conversion_leaves_nothing(home, tmp_path):
    from llmos_core.models import fetch

    cancel = threading.Event()
    cancel.set()
    engine = Engine(Settings.from_env(), start_threads=False)
    try:
        spec = engine.catalog.get("gemma-3-270m")
        with pytest.raises(LoadCancelled):
            engine.models.load("gemma-3-270m", cancel=cancel)
        assert not fetch.is_ready(spec, engine.settings)
        assert engine.models.resident() == [] and engine.models.reserved_bytes() == 0
        leftovers = [p.name for p in engine.settings.models_dir.glob("*")] if engine.settings.models_dir.exists() else []
        assert not [p for p in leftovers if "tmp" in p]
    finally:
        engine.close()
