"""Alert rules: thresholds over snapshots, hysteresis, events in the store, settings from the environment."""
from __future__ import annotations

import json
import time

import pytest

from llmos_core.alerts import AlertThresholds, AlertTracker, evaluate, firing_now, recent_alerts
from llmos_core.errors import SettingsError
from llmos_core.store import Store

GB = 1024**3
LIMITS = AlertThresholds(memory_percent=90, gpu_temp_c=85, gpu_memory_percent=95, swap_mb=256, job_over_estimate=1.0)


def snapshot(mem_percent=50.0, swap_used=0, gpus=None, llmos=None) -> dict:
    return {"ts": time.time(), "mem": {"percent": mem_percent, "used": int(mem_percent / 100 * 16 * GB),
                                       "total": 16 * GB, "swap_used": swap_used, "swap_total": 4 * GB},
            "gpus": gpus, "llmos": llmos or {}}


def gpu(index=0, temp=60, used=10 * GB, total=80 * GB) -> dict:
    return {"index": index, "name": "Fake", "temp_c": temp, "mem_used": used, "mem_total": total}


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "llmos.db")
    yield s
    s.close()


def test_a_calm_machine_sets_nothing_off():
    assert evaluate(snapshot(gpus=[gpu()]), LIMITS) == {}


def test_each_rule_fires_past_its_threshold():
    found = evaluate(snapshot(mem_percent=93, swap_used=512 * 1024**2,
                              gpus=[gpu(0, temp=90), gpu(1, used=78 * GB)]), LIMITS)
    assert set(found) == {"memory", "swap", "gpu0 temperature", "gpu1 memory"}
    assert found["memory"].message.startswith("RAM 93% in use") and "threshold 90%" in found["memory"].message
    assert found["gpu0 temperature"].value == 90 and "GPU 0 at 90 °C" in found["gpu0 temperature"].message
    assert found["gpu1 memory"].value == pytest.approx(97.5)


def test_a_job_above_its_estimate_fires_on_the_memory_it_runs_on():
    llmos = {"job 12": {"label": "training job 12 (LoRA on gemma)", "rss": 3 * GB, "gpu_mem": 1 * GB, "cpu": 100.0},
             "server": {"label": "LLM OS server", "rss": 9 * GB, "gpu_mem": 0, "cpu": 5.0}}
    cpu_job = {12: {"est_memory": 2 * GB, "device": "cpu"}}
    found = evaluate(snapshot(llmos=llmos), LIMITS, cpu_job)
    assert list(found) == ["job 12 memory"] and "above its estimate of 2.0 GB" in found["job 12 memory"].message
    gpu_job = {12: {"est_memory": 2 * GB, "device": "cuda:0"}}
    assert evaluate(snapshot(llmos=llmos), LIMITS, gpu_job) == {}      # 1 GB of GPU memory: within its estimate
    assert evaluate(snapshot(llmos=llmos), LIMITS, {12: {"est_memory": 0, "device": "cpu"}}) == {}   # no estimate


def test_zero_turns_a_rule_off_and_missing_figures_are_skipped():
    off = AlertThresholds(memory_percent=0)
    assert "memory" not in evaluate(snapshot(mem_percent=99), off)
    assert evaluate(snapshot(gpus=[gpu(temp=None, used=None)]), LIMITS) == {}


def test_hysteresis_a_firing_rule_ends_only_below_the_lower_line():
    assert "memory" in evaluate(snapshot(mem_percent=88), LIMITS, firing={"memory"})    # 88 > 90 * 0.95
    assert "memory" not in evaluate(snapshot(mem_percent=85), LIMITS, firing={"memory"})
    assert "memory" not in evaluate(snapshot(mem_percent=88), LIMITS)                     # not yet firing


def test_the_tracker_records_start_and_end_once_each(store):
    clock = [1000.0]
    tracker = AlertTracker(store, LIMITS, clock=lambda: clock[0])
    started, _ = tracker.check(snapshot(mem_percent=95))
    assert [a.key for a in started] == ["memory"]
    for _ in range(5):                                        # still high: no new event
        clock[0] += 1
        assert tracker.check(snapshot(mem_percent=94)) == ([], [])
    clock[0] += 1
    started, ended = tracker.check(snapshot(mem_percent=50))
    assert not started and [a.key for a in ended] == ["memory"]
    rows = store.events(kinds=("alert", "alert_end"))
    assert [r["kind"] for r in reversed(rows)] == ["alert", "alert_end"]
    assert rows[-1]["data"]["threshold"] == 90 and rows[-1]["data"]["value"] == 95
    clock[0] += 1
    assert tracker.check(snapshot(mem_percent=95)) == ([], [])   # too soon after it ended: no flapping
    clock[0] += 61
    assert [a.key for a in tracker.check(snapshot(mem_percent=95))[0]] == ["memory"]


def test_the_tracker_reads_running_jobs_estimates(store):
    store.execute("INSERT INTO jobs (id, kind, params, state, created, pid, est_memory, device) "
                  "VALUES (5, 'train', '{}', 'running', ?, 99, ?, 'cpu')", (time.time(), 1 * GB))
    tracker = AlertTracker(store, LIMITS)
    started, _ = tracker.check(snapshot(llmos={"job 5": {"label": "training job 5", "rss": 2 * GB, "gpu_mem": 0}}))
    assert [a.key for a in started] == ["job 5 memory"]
    firing = firing_now(store, 0)
    assert [e["subject"] for e in firing] == ["job 5 memory"]


def test_recent_and_firing_alerts_read_the_events(store):
    store.add_event("alert", "memory", "RAM 95% in use")
    store.add_event("alert", "swap", "swap in use")
    store.add_event("alert_end", "swap", "ended: swap")
    store.add_event("job_start", "3", "not an alert")
    assert [e["subject"] for e in recent_alerts(store, 0)] == ["memory", "swap", "swap"]
    assert [e["subject"] for e in firing_now(store, 0)] == ["memory"]
    assert recent_alerts(None, 0) == [] and firing_now(None, 0) == []


def test_thresholds_come_from_the_environment_and_are_checked():
    limits = AlertThresholds.from_env({"LLMOS_ALERT_MEMORY_PERCENT": "75", "LLMOS_ALERT_SWAP_MB": "0"})
    assert limits.memory_percent == 75 and limits.swap_mb == 0 and limits.gpu_temp_c == 85
    with pytest.raises(SettingsError) as err:
        AlertThresholds.from_env({"LLMOS_ALERT_GPU_TEMP_C": "hot"})
    assert "LLMOS_ALERT_GPU_TEMP_C" in err.value.message and err.value.hint
    with pytest.raises(SettingsError):
        AlertThresholds(memory_percent=-1)
    with pytest.raises(SettingsError):
        AlertThresholds.from_env({"LLMOS_ALERT_MEMORY_PERCENT": "nan"})


def test_a_broken_store_does_not_stop_the_tracker(store):
    tracker = AlertTracker(store, LIMITS)
    store.close()
    store.path = "/nonexistent/dir/llmos.db"
    started, _ = tracker.check(snapshot(mem_percent=99))
    assert [a.key for a in started] == ["memory"]


def test_the_sampler_calls_the_tracker_after_each_sample(store):
    from monitor_fakes import FakeClock, FakeNVML, FakePsutil

    from llmos_core.gpu import GpuReader
    from llmos_core.host import HostReader
    from llmos_core.monitor import Sampler

    ps = FakePsutil(cores=2, total_ram=16 * GB)
    ps.used_ram = 15 * GB                                    # 94% in use
    mono = FakeClock(10.0)
    sampler = Sampler(store, host=HostReader(ps, clock=mono), gpu=GpuReader(FakeNVML([], init_error=12), clock=mono),
                      mono=mono)
    sampler.listeners.append(AlertTracker(store, LIMITS).check)
    sampler.listeners.append(lambda snap: 1 / 0)             # a broken listener is noted, not fatal
    sampler.sample_once()
    assert [e["message"][:12] for e in recent_alerts(store, 0)] == ["RAM 94% in u"]
    assert "ZeroDivisionError" in sampler.lost[-1]["message"]
    assert json.loads(json.dumps(recent_alerts(store, 0)))   # plain data for the page


def test_cli_watch_prints_an_alert_when_it_starts(home, capsys, monkeypatch):
    from llmos_core.__main__ import main

    monkeypatch.setenv("LLMOS_ALERT_MEMORY_PERCENT", "0.1")   # any machine uses more than 0.1% of its RAM
    assert main(["monitor", "--watch", "--count", "2", "--interval", "0.2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    alerts = [line for line in lines if line.startswith("ALERT ")]
    assert len(lines) == 3 and len(alerts) == 1 and "threshold 0%" in alerts[0] and "RAM" in alerts[0]
