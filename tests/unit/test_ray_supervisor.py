"""The Ray Jobs supervisor's side of the Jobs API, against a recording client (no cluster; the real
cluster runs in tests/cluster/), and the settings and schema it needs. Ray itself is not imported."""
from __future__ import annotations

import enum
import sqlite3
from types import SimpleNamespace

import pytest

from llmos_core import cluster
from llmos_core.errors import ClusterError, SettingsError
from llmos_core.jobs import ray_supervisor
from llmos_core.jobs.ray_supervisor import RaySupervisor
from llmos_core.settings import Settings
from llmos_core.store import SCHEMA, Store


class Status(enum.Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class RecordingClient:
    """What JobSubmissionClient is asked, and the statuses it answers."""

    def __init__(self):
        self.submitted, self.stopped, self.status = [], [], {}
        self.status_reads = 0

    def submit_job(self, **kwargs):
        self.submitted.append(kwargs)
        self.status[kwargs["submission_id"]] = Status.PENDING
        return kwargs["submission_id"]

    def get_job_status(self, job_id):
        self.status_reads += 1
        if job_id not in self.status:
            raise RuntimeError(f"Request failed with status code 404: Job {job_id} does not exist.")
        return self.status[job_id]

    def get_job_info(self, job_id):
        if self.status[job_id] is Status.FAILED:   # Ray gave up placing it: no driver ran
            return SimpleNamespace(driver_exit_code=None, error_type="JOB_SUPERVISOR_ACTOR_START_TIMEOUT",
                                   message="Job supervisor actor failed to start within 900.0 seconds.")
        return SimpleNamespace(driver_exit_code=143 if self.status[job_id] is Status.STOPPED else 0, error_type=None)

    def stop_job(self, job_id):
        self.stopped.append(job_id)
        self.status[job_id] = Status.STOPPED
        return True

    async def tail_job_logs(self, job_id):
        yield "worker output\n"


def job_row(home, **extra) -> dict:
    return {"id": 7, "kind": "benchmark", "device": "cpu", "est_memory": 300 * 1024**2, "params": {},
            "log_path": str(home / "jobs" / "7" / "job.log"), "ray_job_id": None, **extra}


def test_launch_asks_ray_for_the_jobs_cpus_gpus_and_memory(tmp_path):
    client = RecordingClient()
    sup = RaySupervisor(Settings(home=tmp_path, cluster="http://head:8265"), client=client)
    worker = sup.launch(job_row(tmp_path), tmp_path / "jobs" / "7" / "job.log")
    asked = client.submitted[0]
    assert asked["entrypoint"].endswith("-m llmos_core.jobs.worker 7")
    assert (asked["entrypoint_num_cpus"], asked["entrypoint_num_gpus"], asked["entrypoint_memory"]) == (1.0, 0.0, 300 * 1024**2)
    env = asked["runtime_env"]["env_vars"]
    assert env["LLMOS_HOME"] == str(tmp_path) and "LLMOS_CLUSTER" not in env and env["PYTHONPATH"]
    assert worker.identity == {"ray_job_id": asked["submission_id"]} and worker.pid is None
    gpu = sup.launch(job_row(tmp_path, device="cuda"), tmp_path / "jobs" / "7" / "job.log")
    assert client.submitted[1]["entrypoint_num_gpus"] == 1.0 and gpu.ray_job_id != worker.ray_job_id
    # Ray Train workers ask for their own CPUs and memory: the job's worker, which drives them, asks for none
    sup.launch(job_row(tmp_path, kind="train", params={"workers": 2}), tmp_path / "jobs" / "7" / "job.log")
    asked = client.submitted[2]
    assert (asked["entrypoint_num_cpus"], asked["entrypoint_num_gpus"], asked["entrypoint_memory"]) == (0.0, 0.0, 0)


def test_alive_follows_rays_status_and_a_stop_is_confirmed_by_it(tmp_path, monkeypatch):
    monkeypatch.setattr(ray_supervisor, "STATUS_TTL_S", {})   # every call reads Ray's status afresh
    client = RecordingClient()
    sup = RaySupervisor(Settings(home=tmp_path, cluster="http://head:8265"), client=client)
    worker = sup.launch(job_row(tmp_path), tmp_path / "jobs" / "7" / "job.log")
    assert sup.alive(worker) and worker.log_copier is None   # PENDING: no output yet, no log stream opened
    assert worker.waiting == ("waits on the Ray cluster for a node with 1 CPU and 300.0 MB of memory free "
                              "(Ray holds it PENDING)")
    client.status[worker.ray_job_id] = Status.RUNNING
    assert sup.alive(worker) and worker.waiting is None
    worker.log_copier.join(5)
    assert "worker output" in (tmp_path / "jobs" / "7" / "job.log").read_text()
    sup.request_stop(worker)
    assert client.stopped == [worker.ray_job_id] and not sup.alive(worker)
    assert sup.exit_code(worker) == 143


def test_a_status_read_is_kept_a_while_so_watched_jobs_do_not_flood_the_dashboard(tmp_path):
    client = RecordingClient()
    sup = RaySupervisor(Settings(home=tmp_path, cluster="http://head:8265"), client=client)
    workers = [sup.launch(job_row(tmp_path), tmp_path / "jobs" / "7" / "job.log") for _ in range(8)]
    for _ in range(5):   # five loop passes over eight PENDING jobs: one read each
        assert all(sup.alive(w) for w in workers)
    assert client.status_reads == 8
    sup.request_stop(workers[0])   # a stop is confirmed by a fresh read, not the kept one
    assert not sup.alive(workers[0]) and client.status_reads == 9


def test_reattach_watches_a_job_ray_still_runs_and_gives_up_on_one_it_does_not(tmp_path):
    client = RecordingClient()
    sup = RaySupervisor(Settings(home=tmp_path, cluster="http://head:8265"), client=client)
    client.status["llmos-x-7-running"] = Status.RUNNING
    client.status["llmos-x-7-done"] = Status.SUCCEEDED
    assert sup.reattach(job_row(tmp_path, ray_job_id="llmos-x-7-running")).ray_job_id == "llmos-x-7-running"
    assert sup.reattach(job_row(tmp_path, ray_job_id="llmos-x-7-done")) is None
    assert sup.reattach(job_row(tmp_path, ray_job_id="llmos-x-7-forgotten")) is None   # 404: Ray lost it
    assert sup.reattach(job_row(tmp_path)) is None                                     # never submitted


@pytest.mark.parametrize("address", ["head:8265", "http://", "ftp://head:8265", "http://head:8265/x y"])
def test_a_cluster_address_must_be_a_dashboard_url(tmp_path, address):
    with pytest.raises(SettingsError):
        Settings(home=tmp_path, cluster=address)


def test_one_machine_needs_no_ray(tmp_path, monkeypatch):
    assert cluster.describe(Settings(home=tmp_path)) == "this machine"
    monkeypatch.setitem(__import__("sys").modules, "ray.job_submission", None)   # as if Ray were not installed
    with pytest.raises(ClusterError, match="Ray is not installed"):
        cluster.connect("http://head:8265")


def test_an_older_database_gets_the_ray_job_id_column(tmp_path):
    path = tmp_path / "old.db"
    old_schema = "\n".join(line for line in SCHEMA.splitlines() if "ray_job_id" not in line)
    with sqlite3.connect(path) as conn:   # the tables as they were before this column
        conn.executescript(old_schema)
        assert "ray_job_id" not in {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
    Store(path)
    with sqlite3.connect(path) as conn:
        assert "ray_job_id" in {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}


def test_a_job_ray_failed_for_its_start_timeout_is_marked_gave_up_and_others_are_not(tmp_path):
    client = RecordingClient()
    sup = RaySupervisor(Settings(home=tmp_path, cluster="http://head:8265"), client=client)
    waited = sup.launch(job_row(tmp_path), tmp_path / "jobs" / "7" / "job.log")
    done = sup.launch(job_row(tmp_path), tmp_path / "jobs" / "7" / "job.log")
    client.status[waited.ray_job_id], client.status[done.ray_job_id] = Status.FAILED, Status.SUCCEEDED
    for worker in (waited, done):
        sup.wind_up(worker)
    assert "900.0 seconds" in waited.gave_up and sup.exit_code(waited) is None
    assert done.gave_up is None and sup.exit_code(done) == 0
