"""The monitor: host and GPU readers on fake psutil/NVML, attribution, ring buffer, history, bad input."""
from __future__ import annotations

import json
import sqlite3
import time

import pynvml
import pytest

from llmos_core import monitor
from llmos_core.gpu import GpuReader
from llmos_core.host import HostReader
from llmos_core.monitor import Sampler, average, describe_job
from llmos_core.store import Store
from monitor_fakes import FakeClock, FakeNVML, FakePsutil, two_gpu_machine

GB = 1024**3
SERVER, JOB, CHILD, OTHER = 100, 200, 201, 300


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "llmos.db")
    yield s
    s.close()


@pytest.fixture
def machine():
    ps = FakePsutil(cores=4)
    ps.add_process(SERVER, "python", cmdline=["python", "-m", "streamlit", "run", "app.py"])
    ps.add_process(JOB, "python", ppid=SERVER, created=1_000_100.0, cmdline=["python", "-m", "llmos_core.jobs.worker", "12"])
    ps.add_process(CHILD, "python", ppid=JOB, rss=50 * 1024**2)
    ps.add_process(OTHER, "firefox", rss=2 * GB)
    return ps


def make_sampler(ps, nvml, store=None, wall=None, mono=None, **kw) -> Sampler:
    wall = wall or FakeClock(1_000_200.0)
    mono = mono or FakeClock(500.0)
    return Sampler(store, host=HostReader(ps, clock=mono), gpu=GpuReader(nvml, clock=mono),
                   server_pid=SERVER, wall=wall, mono=mono, **kw)


def tick(sampler: Sampler, ps: FakePsutil, dt: float = 1.0, **advance) -> dict:
    ps.advance(dt, **advance)
    sampler._wall.now += dt
    sampler._mono.now += dt
    return sampler.sample_once()


def add_job(store: Store, job_id: int, pid: int, state: str = "running", kind: str = "train",
            params: dict | None = None, pid_started: float | None = None) -> None:
    store.execute("INSERT INTO jobs (id, kind, params, state, created, pid, pid_started) VALUES (?, ?, ?, ?, ?, ?, ?)",
                  (job_id, kind, json.dumps(params or {"method": "LoRA", "model": "gemma-270m"}), state,
                   time.time(), pid, pid_started))


@pytest.fixture
def no_kind_modules(monkeypatch):
    """Job labels from the params alone, whatever the kinds' own describe() say."""
    import llmos_core.jobs.kinds as kinds

    def missing(kind):
        raise ImportError(kind)
    monkeypatch.setattr(kinds, "kind_module", missing)


# ---- host ----
def test_host_cpu_per_core_and_rates_come_from_deltas(machine):
    clock = FakeClock(10.0)
    host = HostReader(machine, clock=clock)
    first = host.read()
    assert first["cpu"]["per_core"] is None and first["io"]["disk_read_bps"] is None   # no delta yet
    machine.advance(2.0, busy=[1.0, 0.5, 0.0, 0.0], disk_read=4000, net_recv=1000)
    clock.now += 2.0
    second = host.read()
    assert second["cpu"]["per_core"] == [100.0, 50.0, 0.0, 0.0]
    assert second["cpu"]["total"] == 37.5
    assert second["io"]["disk_read_bps"] == 2000 and second["io"]["net_recv_bps"] == 500
    assert second["mem"]["total"] == 16 * GB and second["mem"]["used"] == 4 * GB
    assert second["cpu"]["load"] == [0.5, 0.4, 0.3]


def test_host_process_cpu_and_a_process_that_vanishes(machine):
    clock = FakeClock(10.0)
    host = HostReader(machine, clock=clock)
    assert all(r["cpu"] is None for r in host.processes())
    machine.advance(2.0, proc_cpu={JOB: 1.5})
    clock.now += 2.0
    rows = {r["pid"]: r for r in host.processes()}
    assert rows[JOB]["cpu"] == pytest.approx(150.0) and rows[SERVER]["cpu"] == 0.0
    machine.vanish_on_read.add(OTHER)
    assert host.details(rows[OTHER]) == (None, "") and host.vanished == 1
    assert host.details(rows[JOB]) == ("tester", "python -m llmos_core.jobs.worker 12")


def test_the_proc_fast_path_agrees_with_psutil():
    import os
    import subprocess
    import sys

    import psutil

    child = subprocess.Popen([sys.executable, "-c", "import time; x = bytearray(50_000_000); time.sleep(30)"])
    try:
        time.sleep(1.0)
        host = HostReader()
        assert host._fast
        rows = {r["pid"]: r for r in host.processes()}
        me, real = rows[child.pid], psutil.Process(child.pid)
        assert me["ppid"] == os.getpid() and me["name"] == real.name()
        assert me["rss"] == pytest.approx(real.memory_info().rss, rel=0.05) and me["rss"] > 50_000_000
        assert me["created"] == pytest.approx(real.create_time(), abs=0.05)
        assert host.details(me)[1].endswith("time.sleep(30)")
    finally:
        child.kill()
        child.wait()


# ---- GPUs ----
def test_two_gpus_with_per_process_memory():
    nvml = two_gpu_machine(SERVER, JOB)
    nvml.unsupported.add("nvmlDeviceGetPowerUsage")   # some boards do not report power
    gpus = GpuReader(nvml).read()
    assert [g["name"] for g in gpus] == ["Fake H100 A", "Fake H100 B"]
    assert gpus[1]["util"] == 90 and gpus[1]["mem_used"] == 21 * GB and gpus[1]["mem_total"] == 80 * GB
    assert gpus[0]["processes"] == [{"pid": SERVER, "mem_used": 6 * GB}, {"pid": JOB, "mem_used": 1 * GB}]
    assert gpus[0]["power_w"] is None and gpus[0]["power_limit_w"] == 300.0 and gpus[0]["clock_sm_mhz"] == 1500


def test_no_nvidia_library_is_no_gpu_calmly_and_not_retried():
    nvml = FakeNVML([], init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    reader = GpuReader(nvml)
    assert reader.read() is None and reader.read() is None
    assert reader.reason.startswith("no GPU found") and nvml.init_calls == 1 and not reader.problem


def test_nvml_failing_mid_run_is_reported_and_retried():
    clock = FakeClock(0.0)
    nvml = two_gpu_machine(SERVER, JOB)
    reader = GpuReader(nvml, retry_s=30, clock=clock)
    assert len(reader.read()) == 2
    nvml.fail = pynvml.NVML_ERROR_GPU_IS_LOST      # a GPU reset
    assert reader.read() is None
    assert "GPU is lost" in reader.problem and "trying again in 30 s" in reader.problem
    nvml.fail = None
    clock.now = 10.0
    assert reader.read() is None                    # waits for the retry time
    clock.now = 31.0
    assert len(reader.read()) == 2 and nvml.init_calls == 2 and not reader.problem


def test_one_lost_gpu_keeps_the_other():
    nvml = two_gpu_machine(SERVER, JOB)
    reader = GpuReader(nvml)
    reader.read()
    nvml.fail_gpu = 1
    gpus = reader.read()
    assert gpus[0]["util"] == 35 and gpus[1]["util"] is None and "GPU is lost" in gpus[1]["error"]
    assert reader.problem.startswith("GPU 1")


# ---- attribution ----
def test_processes_are_named_by_what_they_are(machine, store, no_kind_modules):
    add_job(store, 12, JOB, pid_started=1_000_100.5)
    add_job(store, 7, OTHER, state="done")          # a finished job's pid is someone else's now
    sampler = make_sampler(machine, two_gpu_machine(SERVER, JOB), store,
                           resident=lambda: [{"name": "smollm2-135m-instruct", "backend": "transformers",
                                              "device": "cpu", "measured_bytes": 520 * 1024**2, "in_use": 0}])
    sampler.sample_once()
    snap = tick(sampler, machine, busy=[1, 1, 0, 0], proc_cpu={JOB: 1.0, CHILD: 0.5})
    rows = {r["pid"]: r for r in snap["processes"]}
    assert rows[JOB]["label"] == "training job 12 (LoRA on gemma-270m)" and rows[JOB]["job_id"] == 12
    assert rows[CHILD]["label"] == "training job 12 (LoRA on gemma-270m) · child" and rows[CHILD]["role"] == "job child"
    assert rows[SERVER]["label"] == "LLM OS server: holds smollm2-135m-instruct 520.0 MB"
    assert rows[OTHER]["label"] == "firefox" and rows[OTHER]["role"] == "other"
    assert rows[JOB]["gpu_mem"] == 21 * GB and rows[SERVER]["gpu_mem"] == 6 * GB and rows[OTHER]["gpu_mem"] == 0
    job = snap["llmos"]["job 12"]                   # the job's own series: worker and child together
    assert job["cpu"] == pytest.approx(150.0) and job["rss"] == 150 * 1024**2 and job["gpu_mem"] == 21 * GB
    assert snap["models"][0]["name"] == "smollm2-135m-instruct"


def test_a_reused_pid_is_not_taken_for_the_job(machine, store, no_kind_modules):
    add_job(store, 12, JOB, pid_started=900_000.0)  # the job's process began long before this one
    snap = make_sampler(machine, two_gpu_machine(SERVER, JOB), store).sample_once()
    assert {r["pid"]: r for r in snap["processes"]}[JOB]["role"] == "server child"   # it is the server's child


def test_describe_job_uses_the_kinds_own_description(monkeypatch):
    import llmos_core.jobs.kinds as kinds

    monkeypatch.setattr(kinds, "kind_module", lambda kind: type("K", (), {"describe": staticmethod(
        lambda params: f"{params['pages']} pages to French")}))
    assert describe_job(3, "translate", '{"pages": 4}') == "translation job 3 (4 pages to French)"


# ---- ring buffer and history ----
def test_ring_buffer_keeps_the_last_samples_and_windows_them(machine):
    sampler = make_sampler(machine, FakeNVML([], init_error=12), capacity=5)
    for _ in range(8):
        tick(sampler, machine)
    assert len(sampler._ring) == 5
    assert [round(s["ts"] - sampler._wall.now) for s in sampler.history(2.5)] == [-2, -1, 0]
    assert len(sampler.history(3600, max_points=2)) == 2


def test_downsampled_history_survives_a_restart(machine, store):
    nvml = two_gpu_machine(SERVER, JOB)
    wall = FakeClock(1_000_020.0)                   # on a minute: no 1 min row is due in 25 s
    sampler = make_sampler(machine, nvml, store, wall=wall)
    sampler.sample_once()
    for i in range(25):                             # 25 s: two full 10 s buckets
        tick(sampler, machine, busy=[1, 1, 1, 1] if i < 10 else [0, 0, 0, 0])
    rows = store.query("SELECT resolution, ts, data FROM monitor_samples ORDER BY resolution, ts")
    assert [(r["resolution"], r["ts"]) for r in rows] == [(10, 1_000_020.0), (10, 1_000_030.0)]
    first = json.loads(rows[0]["data"])
    assert first["cpu"]["total"] == pytest.approx(100.0)      # 9 busy samples (the first has no delta)
    assert first["gpus"][1]["mem_used"] == 21 * GB and first["gpus"][1]["name"] == "Fake H100 B"
    # A new server: its ring buffer is empty, the history comes from SQLite.
    later = make_sampler(machine, nvml, store, wall=FakeClock(wall.now + 5))
    assert [s["ts"] for s in later.history(300)] == [1_000_020.0, 1_000_030.0]


def test_old_history_is_pruned(machine, store):
    store.execute("INSERT INTO monitor_samples VALUES (10, ?, '{}')", (1_000_000.0 - 2 * 86400,))
    store.execute("INSERT INTO monitor_samples VALUES (60, ?, '{}')", (1_000_000.0 - 2 * 86400,))
    sampler = make_sampler(machine, FakeNVML([], init_error=12), store, wall=FakeClock(1_000_000.0))
    for _ in range(12):
        tick(sampler, machine)
    kept = store.query("SELECT resolution FROM monitor_samples WHERE ts < 999000")
    assert kept == [{"resolution": 60}]             # a week of minutes is kept, a day of 10 s rows is not


def test_average_is_leaf_by_leaf():
    a = {"ts": 0, "cpu": {"total": 10.0, "per_core": [0.0, 20.0]}, "gpus": None, "name": "x"}
    b = {"ts": 2, "cpu": {"total": 30.0, "per_core": [10.0, 40.0]}, "gpus": None, "name": "y"}
    assert average([a, b]) == {"ts": 1, "cpu": {"total": 20.0, "per_core": [5.0, 30.0]}, "gpus": None, "name": "y"}
    assert average([{"v": None}, {"v": 4}]) == {"v": 4.0}


# ---- bad input: the sampler keeps going and says what it lost ----
def test_a_locked_database_keeps_the_rows_until_it_frees(machine, store, tmp_path):
    sampler = make_sampler(machine, FakeNVML([], init_error=12), store, wall=FakeClock(1_000_000.0))
    store.connection().execute("PRAGMA busy_timeout=50")
    blocker = sqlite3.connect(tmp_path / "llmos.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")               # another process holds the write lock
    for _ in range(12):
        snap = tick(sampler, machine)
    assert snap["cpu"]["total"] is not None          # sampling went on
    assert any("history not saved" in x["message"] for x in sampler.lost) and sampler._unsaved
    blocker.execute("ROLLBACK")
    blocker.close()
    for _ in range(10):
        tick(sampler, machine)
    assert not sampler._unsaved and store.query("SELECT COUNT(*) AS n FROM monitor_samples")[0]["n"] >= 2
    assert "history saved again" in sampler.lost[-1]["message"]


def test_a_full_disk_is_reported(machine, store, monkeypatch):
    sampler = make_sampler(machine, FakeNVML([], init_error=12), store, wall=FakeClock(1_000_000.0))

    def full(*a, **k):
        raise sqlite3.OperationalError("database or disk is full")
    monkeypatch.setattr(store, "transaction", full)
    for _ in range(12):
        tick(sampler, machine)
    assert "database or disk is full" in sampler.lost[-1]["message"]


def test_a_clock_jump_is_noted_and_future_samples_dropped(machine):
    sampler = make_sampler(machine, FakeNVML([], init_error=12))
    for _ in range(5):
        tick(sampler, machine)
    sampler._wall.now -= 100                         # NTP set the clock back
    tick(sampler, machine)
    assert "clock jumped back by 100 s" in sampler.lost[-1]["message"]
    assert len(sampler._ring) == 1


def test_the_thread_survives_a_failing_read_and_stops(machine):
    sampler = Sampler(None, host=HostReader(machine), gpu=GpuReader(FakeNVML([], init_error=12)),
                      interval_s=0.02)
    calls = {"n": 0}
    real_read = sampler.host.read

    def flaky():
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("proc is not mounted")
        return real_read()
    sampler.host.read = flaky
    sampler.start()
    deadline = time.monotonic() + 10
    while sampler.samples_taken < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    sampler.stop()
    assert sampler.samples_taken >= 3 and not sampler.running
    assert any("proc is not mounted" in x["message"] for x in sampler.lost)


def test_markers_are_the_events_of_the_window(machine, store):
    store.add_event("load", "smollm2", "loaded smollm2 in 3 s")
    store.add_event("job_start", "12", "training job 12 started")
    store.add_event("chat", "x", "not a marker")
    sampler = make_sampler(machine, FakeNVML([], init_error=12), store, wall=time.time)
    assert [m["kind"] for m in sampler.markers(300)] == ["load", "job_start"]


def test_a_snapshot_without_gpu_has_the_gpu_figures_absent(machine):
    snap = make_sampler(machine, FakeNVML([], init_error=12)).sample_once()
    assert snap["gpus"] is None and snap["gpu_status"].startswith("no GPU found")
    json.dumps(snap)                                 # the CLI prints it as is


def test_windows_cover_the_issue():
    assert list(monitor.WINDOWS) == ["5 min", "1 h", "1 day", "1 week"]


# ---- the CLI ----
@pytest.mark.parametrize("nvidia_library", [True, False])
def test_cli_snapshot_without_gpu_has_gpu_figures_absent(home, capsys, monkeypatch, nvidia_library):
    from llmos_core.__main__ import main

    if not nvidia_library:
        monkeypatch.setitem(__import__("sys").modules, "pynvml", None)   # `import pynvml` raises ImportError
    assert main(["monitor", "--once", "--json"]) == 0
    snap = json.loads(capsys.readouterr().out)
    if nvidia_library and snap["gpus"] is not None:   # a CI machine with a GPU: its figures are there
        assert snap["gpus"][0]["mem_total"] > 0
    else:
        assert snap["gpus"] is None and snap["gpu_status"].startswith("no GPU found")
    assert 0 <= snap["cpu"]["total"] <= 100 and snap["mem"]["total"] > 0 and snap["processes"]
    assert not (home / "llmos.db").exists()          # a snapshot creates no database


def test_cli_watch_prints_a_line_per_sample(home, capsys):
    from llmos_core.__main__ import main

    assert main(["monitor", "--watch", "--count", "2", "--interval", "0.2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(" cpu " in line and " ram " in line for line in lines)
