"""Who holds GPU memory: NVML's running-process lists joined to the monitor's names, on the fake NVML."""
from __future__ import annotations

import json
import time

from llmos_core.gpu import GpuReader, attribute_memory
from llmos_core.host import HostReader
from llmos_core.monitor import Sampler
from llmos_core.store import Store
from monitor_fakes import FakeClock, FakeNVML, FakePsutil, two_gpu_machine

GB = 1024**3
SERVER, JOB, CHILD, STRANGER = 100, 200, 201, 999


def sample(tmp_path, nvml, resident) -> dict:
    """One snapshot of a machine running the server, training job 12 and the job's child, on `nvml`."""
    ps = FakePsutil(cores=2)
    ps.add_process(SERVER, "python", cmdline=["python", "-m", "streamlit", "run", "app.py"])
    ps.add_process(JOB, "python", ppid=SERVER, cmdline=["python", "-m", "llmos_core.jobs.worker", "12"])
    ps.add_process(CHILD, "python", ppid=JOB)
    store = Store(tmp_path / "llmos.db")
    store.execute("INSERT INTO jobs (id, kind, params, state, created, pid) VALUES (12, 'train', ?, 'running', ?, ?)",
                  (json.dumps({"method": "LoRA", "model": "gemma-270m"}), time.time(), JOB))
    mono = FakeClock(50.0)
    try:
        return Sampler(store, host=HostReader(ps, clock=mono), gpu=GpuReader(nvml, clock=mono), server_pid=SERVER,
                       resident=lambda: resident, mono=mono, persist=False).sample_once()
    finally:
        store.close()


def test_each_gpu_lists_its_holders_by_job_and_model(tmp_path, monkeypatch):
    import llmos_core.jobs.kinds as kinds

    monkeypatch.setattr(kinds, "kind_module", lambda kind: (_ for _ in ()).throw(ImportError(kind)))
    nvml = two_gpu_machine(SERVER, JOB)
    nvml.gpus[1]["processes"][CHILD] = 2 * GB            # the job's data loader holds memory of its own
    nvml.gpus[1]["processes"][STRANGER] = 3 * GB         # a process of another container: no name here
    resident = [{"name": "gemma-3-270m", "device": "cuda:0", "measured_bytes": 5 * GB},
                {"name": "smollm2", "device": "cpu", "measured_bytes": GB}]
    rows = attribute_memory(sample(tmp_path, nvml, resident))
    by = {(r["gpu"], r["pid"]): r for r in rows}
    assert [(r["gpu"], r["pid"]) for r in rows] == [(0, SERVER), (0, JOB), (1, JOB), (1, STRANGER), (1, CHILD)]
    server = by[(0, SERVER)]
    assert server["gpu_mem"] == 6 * GB and server["role"] == "server" and server["models"] == ["gemma-3-270m"]
    job = by[(1, JOB)]
    assert job["gpu_mem"] == 20 * GB and job["job_id"] == 12 and job["label"].startswith("training job 12")
    assert by[(1, CHILD)]["job_id"] == 12 and by[(1, CHILD)]["role"] == "job child"
    assert by[(1, STRANGER)]["label"] == f"pid {STRANGER} (not visible from here)" and by[(1, STRANGER)]["job_id"] is None


def test_memory_the_driver_cannot_tell_stays_unknown(tmp_path):
    nvml = FakeNVML([{"name": "Fake", "util": 1, "mem_used": GB, "mem_total": 8 * GB, "processes": {SERVER: None}}])
    rows = attribute_memory(sample(tmp_path, nvml, [{"name": "m", "device": "cuda", "measured_bytes": GB}]))
    assert rows == [{"gpu": 0, "pid": SERVER, "gpu_mem": None, "label": rows[0]["label"], "role": "server",
                     "job_id": None, "models": ["m"]}]


def test_no_gpu_means_no_rows(tmp_path):
    assert attribute_memory(sample(tmp_path, FakeNVML([], init_error=12), [])) == []
