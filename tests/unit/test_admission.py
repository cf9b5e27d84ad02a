"""Admission as a pure function: a table of queues, capacities, limits and running jobs -> decisions.

No process, no database: each row builds the inputs from a few figures and states what starts and
what waits, with the words (and figures) the reason must carry.
"""
from __future__ import annotations

import pytest

from llmos_core.errors import InvalidInput
from llmos_core.jobs.admission import Capacity, JobRequest, RunningJob, admit, parse_limits

MB = 1024**2
RESERVE = 256 * MB


def cpu(available_mb: int, **figures) -> Capacity:
    """A CPU with `available_mb` MB available for jobs (the reserve is added to free, as measured)."""
    return Capacity("cpu", free_bytes=available_mb * MB + RESERVE, total_bytes=16_000 * MB, reserve_bytes=RESERVE,
                    **{k: v * MB for k, v in figures.items()})


def gpu(available_mb: int, **figures) -> Capacity:
    return Capacity("cuda", free_bytes=available_mb * MB + RESERVE, total_bytes=24_000 * MB, reserve_bytes=RESERVE,
                    **{k: v * MB for k, v in figures.items()})


def job(job_id: int, need_mb: int, priority: int = 0, kind: str = "benchmark", device: str = "cpu") -> JobRequest:
    return JobRequest(job_id, kind, device, need_mb * MB, priority)


# (name, queued in start order, capacity per device, limits text, running, {job id: "start" | words of the reason})
CASES = [
    ("fits", [job(1, 400)], {"cpu": cpu(1000)}, "", [], {1: "start"}),
    ("two fit, the third does not", [job(1, 400), job(2, 400), job(3, 400)], {"cpu": cpu(1000)}, "", [],
     {1: "start", 2: "start", 3: "waits for 400.0 MB of RAM; 200.0 MB free"}),
    ("does not fit: the reason has the figures", [job(1, 2100)], {"cpu": cpu(1800, jobs_reserved_bytes=500)}, "",
     [], {1: "waits for 2.1 GB of RAM; 1.3 GB free; running jobs have 500.0 MB more reserved"}),
    ("a job that does not fit holds back later ones on its device", [job(1, 900, priority=5), job(2, 100)],
     {"cpu": cpu(500)}, "", [], {1: "waits for 900.0 MB", 2: "waits behind job 1 (priority 5), which needs 900.0 MB"}),
    ("but not on another device", [job(1, 900, device="cuda"), job(2, 100)], {"cpu": cpu(500), "cuda": gpu(500)},
     "", [], {1: "waits for 900.0 MB of GPU memory", 2: "start"}),
    ("a per-kind limit counts running jobs", [job(1, 10, kind="train")], {"cpu": cpu(1000)}, "train@cpu=1",
     [RunningJob(7, "train", "cpu")], {1: "at most 1 train job(s) at a time there (LLMOS_JOB_LIMITS); running: 7"}),
    ("a per-kind limit counts jobs started in the same pass", [job(1, 10, kind="train"), job(2, 10, kind="train")],
     {"cpu": cpu(1000)}, "train@cpu=1", [], {1: "start", 2: "running: 1"}),
    ("a limit of another kind does not apply", [job(1, 10)], {"cpu": cpu(1000)}, "train@cpu=1",
     [RunningJob(7, "train", "cpu")], {1: "start"}),
    ("a * limit counts every kind", [job(1, 10)], {"cpu": cpu(1000)}, "*@cpu=1", [RunningJob(7, "train", "cpu")],
     {1: "at most 1 job(s)"}),
    ("a limited job does not hold back others", [job(1, 10, kind="train", priority=9), job(2, 10)], {"cpu": cpu(1000)},
     "train@cpu=0", [], {1: "free CPU slot", 2: "start"}),
    ("GPU asked but none", [job(1, 10, device="cuda"), job(2, 10)], {"cpu": cpu(1000)}, "", [],
     {1: "waits for a CUDA device: none is visible", 2: "start"}),
    ("resumed while its last run is still stopping", [job(3, 10)], {"cpu": cpu(1000)}, "",
     [RunningJob(3, "benchmark", "cpu")], {3: "its previous run is still stopping"}),
    ("models held are named in the reason", [job(1, 800)], {"cpu": cpu(500, models_held_bytes=600)}, "", [],
     {1: "models hold 600.0 MB (a job of priority 1+ may evict idle ones)"}),
    ("pending model loads are kept out", [job(1, 600)], {"cpu": cpu(1000, models_pending_bytes=500)}, "", [],
     {1: "waits for 600.0 MB of RAM; 500.0 MB free"}),
]


@pytest.mark.parametrize("name, queued, capacity, limits, running, expected", CASES, ids=[c[0] for c in CASES])
def test_admission_table(name, queued, capacity, limits, running, expected):
    decisions = admit(queued, capacity, parse_limits(limits), running)
    assert [d.job_id for d in decisions] == [q.id for q in queued]   # one decision per job, in queue order
    for decision in decisions:
        want = expected[decision.job_id]
        if want == "start":
            assert decision.start and decision.reason is None, decision.reason
        else:
            assert not decision.start and want in decision.reason, decision.reason


def test_priority_order_is_the_queue_order_given():
    """The queue comes highest priority first, then oldest (JobStore.queued): room goes in that order."""
    queued = [job(4, 600, priority=5), job(2, 600, priority=5), job(1, 600, priority=1), job(3, 100, priority=0)]
    decisions = {d.job_id: d for d in admit(queued, {"cpu": cpu(1300)}, {}, [])}
    assert decisions[4].start and decisions[2].start and not decisions[1].start
    assert "waits behind job 1" in decisions[3].reason   # the small one does not jump the big one


def test_idle_models_are_evicted_only_for_a_job_of_high_enough_priority():
    capacity = {"cpu": cpu(500, models_held_bytes=600, models_idle_bytes=600)}
    low, high = job(1, 800, priority=0), job(2, 800, priority=1)
    assert not admit([low], capacity, {}, [], evict_priority=1)[0].start
    (decision,) = admit([high], capacity, {}, [], evict_priority=1)
    assert decision.start and decision.evict_bytes == 300 * MB   # only what it is short of


def test_no_eviction_when_unloading_every_idle_model_would_not_be_enough():
    capacity = {"cpu": cpu(500, models_held_bytes=900, models_idle_bytes=200)}   # 700 MB of them are in use
    (decision,) = admit([job(1, 800, priority=3)], capacity, {}, [], evict_priority=1)
    assert not decision.start and decision.evict_bytes == 0 and "models hold 900.0 MB" in decision.reason


def test_room_taken_by_an_eviction_is_not_counted_twice():
    capacity = {"cpu": cpu(500, models_held_bytes=600, models_idle_bytes=600)}
    first, second, third = admit([job(1, 800, priority=2), job(2, 300, priority=2), job(3, 1, priority=2)],
                                 capacity, {}, [])
    assert first.start and first.evict_bytes == 300 * MB
    assert second.start and second.evict_bytes == 300 * MB   # the rest of the idle models, exactly enough
    assert not third.start and "waits for 1.0 MB of RAM; 0 B free" in third.reason


def test_capacity_figures():
    cap = cpu(1000, jobs_reserved_bytes=300, jobs_used_bytes=200, models_held_bytes=400, models_pending_bytes=100)
    assert cap.available_bytes == 600 * MB
    assert cap.ceiling_bytes == 1600 * MB   # everything stopped: free - reserve + jobs' use + models
    assert set(cap.as_dict()) >= {"device", "free_bytes", "total_bytes", "reserve_bytes", "jobs_reserved_bytes",
                                  "jobs_used_bytes", "models_held_bytes", "models_pending_bytes", "available_bytes",
                                  "ceiling_bytes"}
    assert Capacity("cpu", 10, 100, RESERVE).available_bytes == 0   # never negative


@pytest.mark.parametrize("text, limits", [
    ("", {}),
    ("train@cuda=1", {("train", "cuda"): 1}),
    ("train@cuda=1, *@cpu=4", {("train", "cuda"): 1, ("*", "cpu"): 4}),
    (" ,train@cpu=2,, ", {("train", "cpu"): 2}),
])
def test_parse_limits(text, limits):
    assert parse_limits(text) == limits


@pytest.mark.parametrize("text", ["train=1", "train@cpu", "train@cpu=one", "a@b@c=1", "train@cpu=1=2"])
def test_parse_limits_refuses_what_it_cannot_read(text):
    with pytest.raises(InvalidInput, match="cannot read job limit"):
        parse_limits(text)
