"""Supervisors: the local one on a real worker process, and the loop driving a fake one.

The fake stands for any other supervisor (Ray Jobs, say): no pid, no process; it shows what the
scheduler asks of a supervisor and that starting, sampling, cancelling and winding up go only
through that interface.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from llmos_core.jobs.job_store import log_path
from llmos_core.jobs.scheduler import JobScheduler
from llmos_core.jobs.supervisor import LocalProcessSupervisor, describe_exit
from llmos_core.jobs.worker import EXIT_CANCELLED
from llmos_core.settings import Settings
from llmos_core.store import Store
from job_helpers import kill_jobs, wait_for

MB = 1024**2


def test_local_supervisor_starts_reads_stops_and_reattaches_a_worker(home):
    settings = Settings(home=home)
    sched = JobScheduler(settings, Store(settings.db_path), limits="")   # never started: the store only
    job_id = sched.submit("benchmark", {"memory_mb": 20, "seconds": 60})
    assert sched.jobs.claim(job_id)
    supervisor = LocalProcessSupervisor(settings)
    try:
        worker = supervisor.launch(sched.get(job_id), log_path(settings.jobs_dir, job_id))
        assert supervisor.alive(worker) and supervisor.exit_code(worker) is None
        wait_for(lambda: sched.metrics(job_id), what="the worker to run")
        assert supervisor.usage(worker)["rss_bytes"] > 20 * MB
        again = supervisor.reattach(sched.get(job_id))   # what a scheduler after a restart gets
        assert again is not None and again.pid == worker.pid and again.popen is None
        supervisor.request_stop(worker)
        wait_for(lambda: not supervisor.alive(worker), what="the worker to stop")
        assert supervisor.exit_code(worker) == EXIT_CANCELLED
        supervisor.wind_up(worker)
        assert supervisor.reattach(sched.get(job_id)) is None
        assert sched.get(job_id)["state"] == "cancelled"   # the worker recorded its own end
    finally:
        kill_jobs(sched)


def test_describe_exit():
    assert describe_exit(7) == "exited with code 7"
    assert describe_exit(-9) == "was killed by SIGKILL (out of memory, or killed from outside)"
    assert describe_exit(-15) == "was killed by SIGTERM"
    assert "unknown" in describe_exit(None)


@dataclass
class FakeWorker:
    job_id: int
    pid: None = None             # a remote worker has no local pid
    pid_started: None = None
    running: bool = True
    code: int | None = None
    calls: list = field(default_factory=list)
    waiting: str | None = None   # why it has not begun (a Ray job PENDING)
    gave_up: str | None = None   # Ray failed it before it began (its start timeout)

    @property
    def identity(self) -> dict:   # the row's columns that find it again (a Ray worker: its submission id)
        return {}

    @property
    def where(self) -> str:
        return f"fake worker {self.job_id}"


class FakeSupervisor:
    def __init__(self):
        self.workers: dict[int, FakeWorker] = {}

    def launch(self, job, log_path):
        self.workers[job["id"]] = FakeWorker(job["id"])
        return self.workers[job["id"]]

    def reattach(self, job):
        worker = self.workers.get(job["id"])
        return worker if worker is not None and worker.running else None

    def alive(self, worker):
        return worker.running

    def exit_code(self, worker):
        return worker.code

    def usage(self, worker):
        return {"rss_bytes": 10 * MB, "cpu_percent": 50.0, "gpu_bytes": None, "processes": 1}

    def request_stop(self, worker):
        worker.calls.append("request_stop")

    def kill(self, worker):
        worker.calls.append("kill")
        worker.running, worker.code = False, -9

    def wind_up(self, worker):
        worker.calls.append("wind_up")

    def stop_now(self, worker, grace_s):
        worker.calls.append("stop_now")
        worker.running = False
        return {"signalled": 1}


def test_the_scheduler_runs_jobs_through_any_supervisor(home, monkeypatch):
    monkeypatch.setenv("LLMOS_DEV", "1")   # declare_mb is a test hook of the benchmark kind
    settings = Settings(home=home)
    fake = FakeSupervisor()
    sched = JobScheduler(settings, Store(settings.db_path), supervisor=fake, limits="", cancel_grace_s=0.0,
                         sample_s=0.0, measure=lambda device: (4000 * MB, 8000 * MB))
    crashing = sched.submit("benchmark", {"memory_mb": 1, "declare_mb": 100})
    sched.step()   # starts it
    sched.step()   # samples it
    job = sched.get(crashing)
    assert job["state"] == "running" and job["pid"] is None and sched.usage(crashing)[0]["rss_bytes"] == 10 * MB
    assert sched.reserved_by_jobs("cpu") == 90 * MB   # declared 100, holds 10 (read through the supervisor)

    fake.workers[crashing].running, fake.workers[crashing].code = False, 3   # ended without recording it
    sched.step()
    job = sched.get(crashing)
    assert job["state"] == "failed" and job["exit_code"] == 3 and "exited with code 3" in job["message"]
    assert fake.workers[crashing].calls == ["wind_up"]

    stubborn = sched.submit("benchmark", {"memory_mb": 1})
    sched.step()
    assert sched.cancel(stubborn)["state"] == "cancelled"   # no loop anywhere: stopped from here
    assert fake.workers[stubborn].calls == ["stop_now"]

    cancelled = sched.submit("benchmark", {"memory_mb": 1})
    sched.step()
    assert sched.start()   # the loop now runs here: cancel goes through it
    sched.cancel(cancelled)
    wait_for(lambda: sched.get(cancelled)["state"] == "cancelled", what="the cancel")
    assert fake.workers[cancelled].calls == ["request_stop", "kill", "wind_up"]
    assert "all its processes gone" in sched.get(cancelled)["message"]
    sched.stop()


def test_a_launched_job_that_has_not_begun_says_why_until_its_worker_does(home):
    settings = Settings(home=home)
    fake = FakeSupervisor()
    sched = JobScheduler(settings, Store(settings.db_path), supervisor=fake, limits="",
                         measure=lambda device: (4000 * MB, 8000 * MB))
    job_id = sched.submit("benchmark", {"memory_mb": 1})
    sched.step()   # launched
    fake.workers[job_id].waiting = "waits on the Ray cluster for a node with 1 CPU free (Ray holds it PENDING)"
    sched.step()
    assert sched.get(job_id)["message"] == fake.workers[job_id].waiting
    # the worker begins (it writes its pid first, then its own messages): no later note overwrites them
    sched.store.execute("UPDATE jobs SET pid = 1, message = 'step 1 of 5' WHERE id = ?", (job_id,))
    fake.workers[job_id].waiting = "waits again"
    sched.step()
    assert sched.get(job_id)["message"] == "step 1 of 5"


def test_a_job_ray_gave_up_placing_goes_back_to_the_queue_and_is_launched_again(home):
    """Ray fails a job left PENDING past its start timeout (15 min by default): behind other jobs on a busy
    cluster that is waiting, not failing, so the job is queued again rather than marked failed."""
    settings = Settings(home=home)
    fake = FakeSupervisor()
    sched = JobScheduler(settings, Store(settings.db_path), supervisor=fake, limits="",
                         measure=lambda device: (4000 * MB, 8000 * MB))
    job_id = sched.submit("benchmark", {"memory_mb": 1})
    sched.step()   # launched; Ray holds it PENDING, then gives up
    first = fake.workers[job_id]
    first.running, first.gave_up = False, "Job supervisor actor failed to start within 900.0 seconds."
    sched.step()   # seen ended: queued again, then admitted again in the same pass
    job = sched.get(job_id)
    assert fake.workers[job_id] is not first and job["state"] == "running" and job["runs"] == 2
    requeued = sched.store.query("SELECT message FROM events WHERE kind = 'job_requeue'")
    assert len(requeued) == 1 and "queued again" in requeued[0]["message"]
    # a worker that began and then failed is a failure as before, whatever Ray says
    sched.store.execute("UPDATE jobs SET pid = 1 WHERE id = ?", (job_id,))
    fake.workers[job_id].running, fake.workers[job_id].gave_up, fake.workers[job_id].code = False, "x", 1
    sched.step()
    assert sched.get(job_id)["state"] == "failed"
