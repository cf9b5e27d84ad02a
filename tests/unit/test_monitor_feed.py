"""The live feed the Monitor's charts fetch by themselves: recent samples by chart and line label, remade
after each sample, held in memory for the gate to serve (with a token: tests/unit/test_web_gate.py)."""
from __future__ import annotations

import json

import pytest

from llmos_core.gpu import GpuReader
from llmos_core.host import HostReader
from llmos_core.monitor import Sampler
from llmos_core.monitor_feed import MonitorFeed, current_data
from llmos_core.store import Store
from monitor_fakes import FakeClock, FakeNVML, FakePsutil, two_gpu_machine

SERVER, JOB = 100, 200


@pytest.fixture
def machine():
    ps = FakePsutil(cores=4)
    ps.add_process(SERVER, "python", cmdline=["python", "-m", "streamlit", "run", "app.py"])
    ps.add_process(JOB, "python", ppid=SERVER, cmdline=["python", "-m", "llmos_core.jobs.worker", "12"])
    return ps


def make_sampler(ps, nvml, store=None) -> Sampler:
    mono = FakeClock(500.0)
    return Sampler(store, host=HostReader(ps, clock=mono), gpu=GpuReader(nvml, clock=mono), server_pid=SERVER,
                   wall=FakeClock(1_000_200.0), mono=mono)


def tick(sampler: Sampler, ps: FakePsutil, **advance) -> dict:
    ps.advance(1.0, **advance)
    sampler._wall.now += 1.0
    sampler._mono.now += 1.0
    return sampler.sample_once()


def read(feed: MonitorFeed) -> dict:
    return json.loads(feed.data)


def test_the_feed_follows_each_sample_by_line_label(machine, tmp_path):
    store = Store(tmp_path / "llmos.db")
    sampler = make_sampler(machine, two_gpu_machine(SERVER, JOB), store=store)
    for _ in range(3):
        tick(sampler, machine, busy=[0.5, 0.5, 0.5, 0.5])
    feed = MonitorFeed(sampler, keep=10)
    first = read(feed)
    assert len(first["ts"]) == 3 and first["lines"]["cpu"]["total"][-1] == 50.0
    assert set(first["lines"]) == {"cpu", "memory", "gpu0", "gpu1", "llmos"}
    assert first["lines"]["gpu1"]["utilization %"][-1] == 90
    store.add_event("alert", "memory", "RAM 95% in use")          # an alert rides along as a marker
    for _ in range(12):
        tick(sampler, machine)
    now = read(feed)
    assert feed.writes == 13 and len(now["ts"]) == 10 and now["ts"][-1] == round(sampler.latest()["ts"], 2)
    assert [m["text"] for m in now["markers"] if m["alert"]] == ["alert: RAM 95% in use"]
    assert len(json.dumps(now)) < 3000                              # ten samples of five charts: a few KB at most
    feed.close()
    store.close()


def test_the_newest_open_feed_is_served_and_a_closed_one_is_not(machine, tmp_path):
    sampler = make_sampler(machine, FakeNVML([], init_error=12))
    tick(sampler, machine)
    first, second = MonitorFeed(sampler), MonitorFeed(sampler)
    assert current_data() is second.data
    second.close()
    assert current_data() is first.data and second.on_sample not in sampler.listeners
    first.close()
    assert current_data() is None
    writes = first.writes
    tick(sampler, machine)                                          # a closed feed makes nothing more
    assert first.writes == writes and not list(tmp_path.iterdir())  # and nothing was ever written to disk
