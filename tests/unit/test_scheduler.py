"""The job scheduler with real worker processes running the `benchmark` kind.

Admission tests fake the measured free memory (the jobs declare more than they take, `declare_mb`),
so they do not depend on what else runs on the machine; everything else is real: processes,
signals, SQLite, the log files.
"""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import pytest

from llmos_core.engine import Engine
from llmos_core.errors import InsufficientMemory, InvalidInput, JobError
from llmos_core.jobs import benchmark, resources
from llmos_core.jobs.scheduler import FINISHED, JobScheduler, parse_limits
from llmos_core.settings import Settings
from llmos_core.store import Store
from llmos_core.cli.jobs import parse_params
from job_helpers import kill_jobs, wait_for

MB = 1024**2
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def ended(sched: JobScheduler, job_id: int) -> dict | None:
    """The job once it is finished AND the scheduler has wound it up (job_end recorded, processes gone)."""
    job = sched.get(job_id)
    events = [e for e in sched.store.events(kinds=("job_end",), limit=1000) if e["subject"] == str(job_id)]
    if job["state"] in FINISHED and events and resources.process_if_same(job["pid"], job["pid_started"]) is None:
        return job
    return None


@pytest.fixture(autouse=True)
def dev_hooks(monkeypatch):
    """These tests use the benchmark kind's test hooks (declare_mb, crash, ignore_cancel...): LLMOS_DEV=1."""
    monkeypatch.setenv("LLMOS_DEV", "1")


def make(home, **kwargs) -> JobScheduler:
    settings = Settings(home=home)
    options = {"poll_s": 0.05, "sample_s": 0.3, "cancel_grace_s": 2.0, "limits": ""}
    options.update(kwargs)
    return JobScheduler(settings, Store(settings.db_path), **options)


@pytest.fixture
def schedulers(home):
    """Schedulers made by a test; afterwards every job's process group is killed, every loop stopped."""
    made: list[JobScheduler] = []

    def factory(**kwargs) -> JobScheduler:
        sched = make(home, **kwargs)
        made.append(sched)
        return sched

    yield factory
    for sched in made:
        sched.stop()
    if made:
        kill_jobs(made[0])


def fixed_free(free_bytes: int):
    return lambda device: (free_bytes, 4 * free_bytes)


def test_runs_a_job_with_progress_metrics_usage_log_and_events(schedulers):
    sched = schedulers(sample_s=0.2)
    assert sched.start()
    job_id = sched.submit("benchmark", {"memory_mb": 30, "seconds": 1.2})
    job = wait_for(lambda: ended(sched, job_id), what="the job to end")
    assert job["state"] == "succeeded" and job["exit_code"] == 0 and job["progress"] == 1.0
    assert job["result"]["completed"] is True and job["result"]["held_mb"] == 30
    assert sched.metrics(job_id) and "elapsed_s" in sched.metrics(job_id)[-1]
    usage = sched.usage(job_id)
    assert usage and max(u["rss_bytes"] for u in usage) > 30 * MB   # the 30 MB really were resident
    assert "job succeeded" in sched.log_tail(job_id)
    kinds = [e["kind"] for e in sched.store.events(limit=100) if e["subject"] == str(job_id)]
    assert {"job_submit", "job_start", "job_end"} <= set(kinds)


def test_priority_then_age_and_memory_decide_who_starts(schedulers):
    # 1000 MB available for jobs; each declares 400 MB: two fit, the third must wait.
    sched = schedulers(measure=fixed_free(1000 * MB + 256 * MB))
    low = sched.submit("benchmark", {"memory_mb": 1, "declare_mb": 400, "seconds": 60}, priority=0)
    high_old = sched.submit("benchmark", {"memory_mb": 1, "declare_mb": 400, "seconds": 60}, priority=5)
    middle = sched.submit("benchmark", {"memory_mb": 1, "declare_mb": 400, "seconds": 60}, priority=1)
    high_new = sched.submit("benchmark", {"memory_mb": 1, "declare_mb": 400, "seconds": 60}, priority=5)
    sched.step()
    states = {j: sched.get(j)["state"] for j in (low, high_old, middle, high_new)}
    assert states == {low: "queued", high_old: "running", middle: "queued", high_new: "running"}
    assert sched.get(high_old)["started"] <= sched.get(high_new)["started"]
    assert sched.waiting_reason(middle) == "no scheduler is running: start the app or `python -m llmos_core jobs run`"
    assert sched.start()
    wait_for(lambda: sched.get(middle)["waiting"], what="a waiting reason")
    assert sched.waiting_reason(middle).startswith("waits for 400.0 MB of RAM;")
    assert f"behind job {middle}" in sched.waiting_reason(low)   # a big job is not starved by later ones
    assert [q["id"] for q in sched.queue()] == [middle, low]
    sched.cancel(high_old)
    wait_for(lambda: sched.get(middle)["state"] == "running", what="the next job to start")
    assert sched.get(low)["state"] == "queued"
    running = sched.list(states=["running"])
    assert len(running) == 2


def test_a_job_larger_than_the_machine_is_refused_with_figures(schedulers):
    sched = schedulers(measure=fixed_free(2000 * MB))
    with pytest.raises(InsufficientMemory) as info:
        sched.submit("benchmark", {"memory_mb": 1, "declare_mb": 5000})
    assert info.value.needed == 5000 * MB and info.value.free < 2000 * MB
    assert "make the job smaller" in info.value.hint
    assert sched.list() == []
    assert sched.store.events(kinds=("job_refused",))


def test_bad_input_is_refused_before_queueing(schedulers):
    sched = schedulers()
    with pytest.raises(InvalidInput, match="unknown job kind"):
        sched.submit("nonsense", {})
    with pytest.raises(InvalidInput, match="does not take"):
        sched.submit("benchmark", {"colour": "red"})
    with pytest.raises(InvalidInput, match="not a number"):
        sched.submit("benchmark", {"seconds": "soon"})
    with pytest.raises(InvalidInput, match="priority"):
        sched.submit("benchmark", {}, priority="high")
    with pytest.raises(InvalidInput, match="CUDA"):
        schedulers(cuda_available=False).submit("benchmark", {"device": "cuda"})
    assert sched.list() == []
    with pytest.raises(JobError, match="no job 42"):
        sched.get(42)


def test_cancel_kills_the_whole_tree_even_children_deaf_to_sigterm(schedulers):
    sched = schedulers(cancel_grace_s=3.0)
    sched.start()
    job_id = sched.submit("benchmark", {"memory_mb": 20, "seconds": 60, "children": 2, "child_memory_mb": 10,
                                        "stubborn_children": True})
    worker = wait_for(lambda: resources.process_if_same(sched.get(job_id)["pid"], sched.get(job_id)["pid_started"]))
    tree = wait_for(lambda: (lambda t: t if len(t) == 3 else None)(resources.tree(worker)), what="two children")
    assert sched.cancel(job_id)["state"] == "cancelling"
    job = wait_for(lambda: ended(sched, job_id), what="the cancel")
    assert job["state"] == "cancelled" and job["resumable"]
    assert not [p for p in tree if resources.is_alive(p)], "a process of the tree survived the cancel"
    assert "all its processes gone" in job["message"] and job["freed_memory"] is not None
    with pytest.raises(JobError, match="nothing to cancel"):
        sched.cancel(job_id)


def test_a_worker_that_ignores_cancel_is_killed_after_the_grace(schedulers):
    sched = schedulers(cancel_grace_s=1.0)
    sched.start()
    job_id = sched.submit("benchmark", {"memory_mb": 5, "seconds": 60, "ignore_cancel": True})
    wait_for(lambda: sched.get(job_id)["pid"] and sched.metrics(job_id), what="the job to run")
    sched.cancel(job_id)
    job = wait_for(lambda: ended(sched, job_id), what="the kill")
    assert job["state"] == "cancelled" and job["exit_code"] == -signal.SIGKILL
    assert "SIGKILL" in job["message"]


def test_crashes_are_recorded_with_exit_code_and_log(schedulers):
    sched = schedulers()
    sched.start()
    raising = sched.submit("benchmark", {"memory_mb": 1, "seconds": 5, "crash": "exception"})
    exiting = sched.submit("benchmark", {"memory_mb": 1, "seconds": 5, "crash": "exit", "exit_code": 7})
    killed = sched.submit("benchmark", {"memory_mb": 1, "seconds": 5, "crash": "kill", "crash_after": 0.3})
    jobs = {j: wait_for(lambda j=j: ended(sched, j), what=f"job {j}") for j in (raising, exiting, killed)}
    assert jobs[raising]["state"] == "failed" and jobs[raising]["exit_code"] == 1
    assert "RuntimeError: benchmark crashed on purpose" in jobs[raising]["message"]
    assert "Traceback" in sched.log_tail(raising)
    assert jobs[exiting]["state"] == "failed" and jobs[exiting]["exit_code"] == 7
    assert "exited with code 7" in jobs[exiting]["message"] and "crashing on purpose" in jobs[exiting]["message"]
    assert jobs[killed]["exit_code"] == -signal.SIGKILL and "SIGKILL" in jobs[killed]["message"]
    assert jobs[killed]["resumable"]


def test_sigkill_from_outside_fails_the_job_resumably_and_resume_continues(schedulers):
    sched = schedulers()
    sched.start()
    job_id = sched.submit("benchmark", {"memory_mb": 5, "seconds": 3})
    wait_for(lambda: sched.get(job_id)["progress"] > 0.3, what="progress")
    os.kill(sched.get(job_id)["pid"], signal.SIGKILL)
    job = wait_for(lambda: ended(sched, job_id), what="the dead worker to be noticed")
    assert job["state"] == "failed" and job["exit_code"] == -signal.SIGKILL and job["resumable"]
    sched.resume(job_id)
    job = wait_for(lambda: ended(sched, job_id), what="the resumed run")
    assert job["state"] == "succeeded" and job["result"]["resumed_from_s"] > 0.5 and job["runs"] == 2
    with pytest.raises(JobError, match="only an interrupted, cancelled or failed job"):
        sched.resume(job_id)


def test_resume_of_a_kind_without_checkpoints_is_refused(schedulers, monkeypatch):
    sched = schedulers()
    sched.start()
    job_id = sched.submit("benchmark", {"memory_mb": 1, "seconds": 30})
    wait_for(lambda: sched.get(job_id)["pid"], what="start")
    sched.cancel(job_id)
    wait_for(lambda: ended(sched, job_id), what="cancel")
    monkeypatch.setattr(benchmark, "RESUMABLE", False)
    with pytest.raises(JobError, match="cannot be resumed"):
        sched.resume(job_id)


def test_restart_reattaches_live_workers_interrupts_dead_ones_keeps_the_queue(schedulers):
    first = schedulers()
    first.start()
    alive = first.submit("benchmark", {"memory_mb": 5, "seconds": 60})
    wait_for(lambda: first.get(alive)["pid_started"], what="start")
    first.stop()   # the scheduler goes; its worker must not
    # A job whose worker died while no scheduler watched: a real, finished process's pid.
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = first.submit("benchmark", {"memory_mb": 1, "seconds": 1})
    first.store.execute("UPDATE jobs SET state = 'running', pid = ?, pid_started = ?, started = ? WHERE id = ?",
                        (gone.pid, time.time() - 5, time.time() - 5, dead))
    queued = first.submit("benchmark", {"memory_mb": 1, "seconds": 0.2})

    second = schedulers()
    second.step()
    assert second.get(alive)["state"] == "running"
    assert [e for e in second.store.events(kinds=("job_reattach",)) if e["subject"] == str(alive)]
    interrupted = second.get(dead)
    assert interrupted["state"] == "interrupted" and interrupted["resumable"]
    assert second.get(queued)["state"] in ("queued", "running")
    second.start()
    assert wait_for(lambda: ended(second, queued))["state"] == "succeeded"
    second.cancel(alive)   # a reattached worker is cancelled like any other
    assert wait_for(lambda: ended(second, alive))["state"] == "cancelled"


def test_kill_9_of_the_scheduler_process_loses_nothing(schedulers, home):
    env = {**os.environ, "LLMOS_HOME": str(home)}
    server = subprocess.Popen([sys.executable, "-m", "llmos_core", "jobs", "run"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        sched = schedulers()
        wait_for(sched.is_alive, timeout=60, what="the foreground scheduler")
        job_id = sched.submit("benchmark", {"memory_mb": 5, "seconds": 60})
        wait_for(lambda: sched.get(job_id)["pid_started"], what="the job to start in the other process")
        server.kill()
        server.wait()
        assert not sched.is_alive()
        worker = resources.process_if_same(sched.get(job_id)["pid"], sched.get(job_id)["pid_started"])
        assert worker is not None, "the worker died with its scheduler"
        sched.start()
        sched.step()
        assert sched.get(job_id)["state"] == "running"
        sched.cancel(job_id)
        assert wait_for(lambda: ended(sched, job_id))["state"] == "cancelled"
    finally:
        server.kill()
        server.wait()


def test_cancel_from_another_scheduler_object_goes_through_the_store(schedulers):
    primary = schedulers()
    primary.start()
    other = schedulers()   # like a non-primary engine: never started
    job_id = other.submit("benchmark", {"memory_mb": 1, "seconds": 60})
    wait_for(lambda: other.get(job_id)["pid"], what="the primary to start it")
    assert other.is_alive()
    assert other.cancel(job_id)["state"] == "cancelling"
    assert wait_for(lambda: ended(other, job_id))["state"] == "cancelled"


def test_cancel_with_no_scheduler_anywhere_stops_the_tree_itself(schedulers):
    first = schedulers()
    first.start()
    job_id = first.submit("benchmark", {"memory_mb": 1, "seconds": 60, "children": 1})
    wait_for(lambda: first.get(job_id)["pid_started"] and first.metrics(job_id), what="start")
    first.stop()
    lone = schedulers()
    assert not lone.is_alive()
    result = lone.cancel(job_id)
    assert result["state"] == "cancelled" and result["signalled"] >= 2
    assert lone.get(job_id)["state"] == "cancelled"


def test_limit_per_kind_and_device(schedulers):
    sched = schedulers(limits="benchmark@cpu=1")
    sched.start()
    first = sched.submit("benchmark", {"memory_mb": 1, "seconds": 60})
    second = sched.submit("benchmark", {"memory_mb": 1, "seconds": 60})
    wait_for(lambda: sched.get(second)["waiting"], what="a reason")
    assert sched.get(first)["state"] == "running"
    assert "at most 1 benchmark job(s)" in sched.waiting_reason(second)
    sched.cancel(first)
    wait_for(lambda: sched.get(second)["state"] == "running", what="the second to start")
    assert parse_limits("train@cuda=1, *@cpu=4") == {("train", "cuda"): 1, ("*", "cpu"): 4}
    with pytest.raises(InvalidInput):
        parse_limits("train=1")


class FakeModels:
    """The methods of ModelManager admission uses, plus unload; memory comes back on unload."""

    def __init__(self, free: list[int]):
        self.free = free
        self.models = [{"name": "idle-model", "backend": "transformers", "in_use": 0, "idle_s": 50.0,
                        "measured_bytes": 600 * MB, "estimated_bytes": 600 * MB}]
        self.unloaded: list[str] = []

    def resident(self):
        return list(self.models)

    def pending_bytes(self):
        return 0

    def unload(self, name, backend=None, reason="unload"):
        self.models = [m for m in self.models if m["name"] != name]
        self.unloaded.append(name)
        self.free[0] += 600 * MB
        return True


def test_idle_models_are_evicted_only_for_a_high_priority_job(schedulers):
    free = [256 * MB + 500 * MB]
    models = FakeModels(free)
    sched = schedulers(models=models, model_device="cpu", measure=lambda d: (free[0], 8000 * MB), evict_priority=1)
    low = sched.submit("benchmark", {"memory_mb": 1, "declare_mb": 800, "seconds": 1})
    sched.step()
    assert sched.get(low)["state"] == "queued" and not models.unloaded
    assert "models hold 600.0 MB" in sched.get(low)["waiting"]
    sched.cancel(low)
    high = sched.submit("benchmark", {"memory_mb": 1, "declare_mb": 800, "seconds": 0.2}, priority=1)
    sched.step()
    assert models.unloaded == ["idle-model"] and sched.get(high)["state"] == "running"
    sched.start()
    wait_for(lambda: ended(sched, high))


def test_concurrent_submissions_from_threads_and_processes(schedulers, home):
    sched = schedulers()
    ids: list[int] = []
    lock = threading.Lock()

    def submit_five():
        for _ in range(5):
            job_id = sched.submit("benchmark", {"memory_mb": 0, "seconds": 0})
            with lock:
                ids.append(job_id)

    code = ("import sys; from llmos_core.settings import Settings; from llmos_core.store import Store;"
            "from llmos_core.jobs.scheduler import JobScheduler;"
            "s = Settings(home=sys.argv[1]); j = JobScheduler(s, Store(s.db_path));"
            "print(*[j.submit('benchmark', {'memory_mb': 0, 'seconds': 0}) for _ in range(5)])")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(home)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    threads = [threading.Thread(target=submit_five) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        ids += [int(x) for x in out.split()]
    assert len(ids) == 30 and len(set(ids)) == 30
    assert len(sched.list(states=["queued"])) == 30


def test_delete_refuses_running_jobs_and_removes_files(schedulers):
    sched = schedulers()
    sched.start()
    job_id = sched.submit("benchmark", {"memory_mb": 1, "seconds": 60})
    wait_for(lambda: sched.get(job_id)["state"] == "running")
    with pytest.raises(JobError, match="cancel it first"):
        sched.delete(job_id)
    sched.cancel(job_id)
    wait_for(lambda: ended(sched, job_id))
    folder = sched.settings.jobs_dir / str(job_id)
    assert folder.exists()
    sched.delete(job_id)
    assert not folder.exists() and sched.list() == []


def test_cli_params_are_read_as_json_when_they_can_be():
    assert parse_params(["a=5", "b=true", "c=text", "d=[1, 2]", "e=x=y"]) == {
        "a": 5, "b": True, "c": "text", "d": [1, 2], "e": "x=y"}
    with pytest.raises(InvalidInput):
        parse_params(["novalue"])


def test_a_running_job_keeps_its_reservation_from_the_models_room(home):
    """The engine wires the scheduler's reservations into the model manager: a job that declared 2 GB and has
    taken little of it leaves models about 2 GB less room (measured free memory alone would not know)."""
    # A budget above free memory, so the room is what is free (else the budget would be the limit).
    engine = Engine(Settings(home=home, memory_budget=1024**4), primary=True, start_threads=False)
    try:
        assert engine.scheduler.start()
        before = engine.models.room()
        job = engine.scheduler.submit("benchmark", {"memory_mb": 1, "declare_mb": 2048, "seconds": 20})
        wait_for(lambda: engine.scheduler.get(job)["state"] == "running", what="the job to start")
        reserved = engine.scheduler.reserved_by_jobs("cpu")
        assert 1800 * MB < reserved <= 2048 * MB
        assert before - engine.models.room() > 1500 * MB   # free memory moves a little on a shared machine
        engine.scheduler.cancel(job)
        wait_for(lambda: ended(engine.scheduler, job), what="the job to end")
        assert engine.scheduler.reserved_by_jobs("cpu") == 0
    finally:
        kill_jobs(engine.scheduler)
        engine.close()


class FlakyStore(Store):
    """A store whose writes raise sqlite3.OperationalError while `failing` is set, as when another process
    holds the database lock past the busy timeout or the disk is full. Reads still work."""

    failing = False
    refused = 0

    def execute(self, sql, params=()):
        if self.failing and sql.lstrip().split()[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            self.refused += 1
            raise sqlite3.OperationalError("database is locked")
        return super().execute(sql, params)

    @contextmanager
    def transaction(self):
        if self.failing:
            self.refused += 1
            raise sqlite3.OperationalError("database is locked")
        with super().transaction() as conn:
            yield conn


def test_the_loop_survives_a_failing_store_and_starts_queued_jobs_once_it_recovers(home):
    settings = Settings(home=home)
    store = FlakyStore(settings.db_path)
    sched = JobScheduler(settings, store, poll_s=0.05, sample_s=0.3, cancel_grace_s=2.0, limits="",
                         max_backoff_s=0.2, stale_after_s=1.0)
    job_id = sched.submit("benchmark", {"memory_mb": 1, "seconds": 0.2})
    store.failing = True
    try:
        assert sched.start()
        # Each pass fails at its first write, and so does writing the scheduler_error event about it.
        wait_for(lambda: store.refused >= 8, what="the loop to go on trying while the store fails")
        assert sched.get(job_id)["state"] == "queued"
        health = sched.health()
        assert health["running_here"] and health["failures"] >= 2 and health["last_step_at"] is None
        assert health["last_error"] == "OperationalError: database is locked"
        wait_for(lambda: not sched.is_alive(), what="is_alive to say the loop makes no progress")
        assert sched.waiting_reason(job_id).startswith("the scheduler is failing (OperationalError: database is locked)")
        store.failing = False
        job = wait_for(lambda: ended(sched, job_id), what="the job to run once the store works again")
        assert job["state"] == "succeeded"
        health = sched.health()
        assert health["alive"] and health["failures"] == 0 and health["last_step_at"] > health["last_error_at"]
        (recovered,) = store.events(kinds=("scheduler_recovered",))   # the event log learns of it afterwards
        assert "database is locked" in recovered["message"]
    finally:
        sched.stop()
        kill_jobs(sched)


def test_health_of_a_loop_here_and_of_none(schedulers):
    sched = schedulers()
    assert sched.health() == {"alive": False, "running_here": False, "last_step_at": None, "last_error": None,
                              "last_error_at": None, "failures": 0}
    assert sched.start()
    assert sched.is_alive()   # at once, before its first pass: `jobs run` checks this right after starting
    wait_for(lambda: sched.health()["last_step_at"], what="a first pass")
    assert sched.health()["alive"] and sched.health()["last_error"] is None
    sched.stop()
    assert not sched.is_alive() and not sched.health()["running_here"]
