"""The Monitor page and Home's compact view in AppTest, on a sampler fed fake psutil and a fake two-GPU NVML.

The engine of the test's data folder is made here first (AppTest runs the app in this process, so the
page finds the same engine); its real sampler is stopped and replaced by one reading the fakes.
Fragment timers never fire in AppTest: a plain rerun draws what the fragment draws.
"""
from __future__ import annotations

import json
import os
import time

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from llmos_core import engine as engine_module
from llmos_core.gpu import GpuReader
from llmos_core.host import HostReader
from llmos_core.monitor import Sampler
from monitor_fakes import FakeClock, FakeNVML, FakePsutil, two_gpu_machine

JOB = 4242


@pytest.fixture
def fake_engine(home):
    """The test's engine, with a sampler on a fake 4-core machine running LLM OS and one training job."""
    st.cache_resource.clear()             # an engine cached by an earlier test belongs to another data folder
    eng = engine_module.get_engine()

    def install(nvml) -> Sampler:
        eng.sampler.stop()
        ps = FakePsutil(cores=4)
        server = os.getpid()
        ps.add_process(server, "python", cmdline=["python", "-m", "streamlit", "run", "app.py"])
        ps.add_process(JOB, "python", ppid=server, cmdline=["python", "-m", "llmos_core.jobs.worker", "12"])
        ps.add_process(4300, "firefox", rss=3 * 1024**3)
        eng.store.execute("INSERT INTO jobs (id, kind, params, state, created, pid) VALUES (12, 'train', ?, 'running', ?, ?)",
                          (json.dumps({"method": "lora", "model": "gemma-270m"}), time.time(), JOB))
        eng.store.add_event("job_start", "12", "training job 12 started")
        wall, mono = FakeClock(time.time() - 30), FakeClock(100.0)
        sampler = Sampler(eng.store, host=HostReader(ps, clock=mono), gpu=GpuReader(nvml, clock=mono),
                          server_pid=server, resident=eng.models.resident, wall=wall, mono=mono)
        for i in range(31):               # 30 s of history, the job busy for the last 10
            ps.advance(1.0, busy=[1.0, 1.0, 0.1, 0.0] if i > 20 else [0.1] * 4, proc_cpu={JOB: 2.0} if i > 20 else {})
            wall.now, mono.now = wall.now + 1, mono.now + 1
            sampler.sample_once()
        eng.sampler = sampler
        return sampler

    yield install
    eng.close()
    engine_module._engines.pop(eng.home, None)
    st.cache_resource.clear()


def open_monitor(new_app) -> AppTest:
    at = new_app()
    at.switch_page("app_pages/monitor.py").run()
    assert not at.exception, at.exception
    return at


def payload(at: AppTest) -> dict:
    """What the page sent the live chart component on its last run."""
    charts = at.get("component_instance")
    assert len(charts) == 1, [e.value for e in at.error]
    chart = charts[0]
    return json.loads(chart.proto.json_args)["payload"]


def last(p: dict, chart: str, line: str):
    """The last value of one line of one chart in a payload."""
    labels = [s["label"] for c in p["charts"] if c["id"] == chart for s in c["series"]]
    return p["values"][chart][labels.index(line)][-1]


def frame(at: AppTest, column: str):
    return next(d.value for d in at.dataframe if column in d.value.columns)


def test_monitor_page_on_a_two_gpu_machine(fake_engine, new_app):
    fake_engine(two_gpu_machine(os.getpid(), JOB))
    at = open_monitor(new_app)
    p = payload(at)
    assert p["reset"] and [c["id"] for c in p["charts"]] == ["cpu", "memory", "gpu0", "gpu1", "llmos"]
    assert last(p, "cpu", "total") == pytest.approx(52.5) and len(p["ts"]) >= 31
    assert len([s for s in p["charts"][0]["series"] if s["label"].startswith("core")]) == 4
    assert any(m["kind"] == "job_start" for m in p["markers"])              # the job's start marker
    assert last(p, "gpu1", "utilization %") == 90
    assert not at.get("plotly_chart")                                        # no figure built on the server
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["CPU"] == "52%" and metrics["GPU 1"] == "90%" and metrics["GPU 0 memory"] == "8.0 GB"
    table = frame(at, "what")
    job_row = table[table.pid == JOB].iloc[0]
    assert job_row["what"].startswith("training job 12 (") and "gemma-270m" in job_row["what"]
    assert job_row["GPU memory (MB)"] == 21 * 1024
    assert table.iloc[0]["pid"] == JOB                       # sorted by CPU: the busy job first
    holders = frame(at, "held by")                           # who holds each GPU's memory
    assert list(holders["GPU"]) == [0, 0, 1] and holders.iloc[2]["held by"].startswith("training job 12")
    assert not any("No GPU found" in c.value for c in at.caption)

    at.selectbox(key="monitor_sort").set_value("GPU memory").run()
    table = frame(at, "what")
    assert list(table["GPU memory (MB)"][:2]) == [21 * 1024, 6 * 1024]
    at.selectbox(key="monitor_sort").set_value("RAM").run()
    assert frame(at, "what").iloc[0]["pid"] == 4300


def test_monitor_page_without_gpu_says_so_once(fake_engine, new_app):
    fake_engine(FakeNVML([], init_error=12))
    at = open_monitor(new_app)
    notes = [c.value for c in at.caption if "No GPU found" in c.value]
    assert len(notes) == 1
    assert [c["id"] for c in payload(at)["charts"]] == ["cpu", "memory", "llmos"]
    assert "GPU memory (MB)" not in frame(at, "what").columns
    assert not [d for d in at.dataframe if "held by" in d.value.columns]


def test_window_selector_reads_the_history(fake_engine, new_app):
    sampler = fake_engine(FakeNVML([], init_error=12))
    day_old = sampler._wall.now - 3 * 86400
    sampler.store.execute("INSERT INTO monitor_samples VALUES (60, ?, ?)",
                          (day_old, json.dumps({**sampler.history(10)[-1], "ts": day_old})))
    at = open_monitor(new_app)
    assert payload(at)["ts"][0] > day_old + 86400                   # 5 min: not the row of three days ago
    at.radio(key="monitor_window").set_value("1 week").run()
    assert not at.exception
    p = payload(at)
    # The stored minute of three days ago (a restart ago), then this run's minutes and ring buffer.
    assert p["window_s"] == 7 * 86400 and p["ts"][0] == pytest.approx(day_old, abs=0.01) and len(p["ts"]) >= 32


def test_an_alert_shows_on_monitor_and_home_and_as_a_toast(fake_engine, new_app):
    sampler = fake_engine(FakeNVML([], init_error=12))
    at = open_monitor(new_app)
    assert not [w for w in at.warning if "RAM" in w.value]
    sampler.store.add_event("alert", "memory", "RAM 95% in use (15.2 GB), threshold 90%")
    at.run()
    assert any("RAM 95% in use" in w.value for w in at.warning)             # still firing: a warning line
    assert any("RAM 95% in use" in t.value for t in at.toast)               # new since the page opened: a toast
    assert any(m["kind"] == "alert" and m["alert"] for m in payload(at)["markers"])   # a red marker
    at.switch_page("app_pages/home.py").run()
    assert any("RAM 95% in use" in w.value for w in at.warning)
    sampler.store.add_event("alert_end", "memory", "ended: memory")
    at.run()
    assert not [w for w in at.warning if "RAM" in w.value]


def test_home_shows_the_compact_view_and_links_to_the_monitor(fake_engine, new_app):
    fake_engine(two_gpu_machine(os.getpid(), JOB))
    at = new_app()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["CPU"] == "52%" and metrics["GPUs (2)"] == "90%"
    assert any("training job 12" in c.value for c in at.caption)
    p = payload(at)                                           # the last five minutes of CPU, drawn in the browser
    assert [c["id"] for c in p["charts"]] == ["cpu"] and p["window_s"] == 300 and len(p["ts"]) >= 31
