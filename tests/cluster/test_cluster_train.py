"""Ray Train on the two-node cluster (conftest.py): a LoRA run on 2 workers, one a node, gloo on the CPU,
follows the same loss curve as the same run in one process with twice the batch. Same seed, same data
order, no dropout: data-parallel training averages the two halves' gradients into the whole batch's.
Run by test_cluster.py inside its loopback-only namespace, after the scenarios, on the same cluster.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.cluster,
              pytest.mark.skipif(not os.environ.get("LLMOS_TEST_NETNS"),
                                 reason="run by test_cluster.py inside its loopback-only network namespace")]

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import tiny_models  # noqa: E402
from job_helpers import wait_for  # noqa: E402

from llmos_core.models.catalog import Catalog  # noqa: E402
from llmos_core.training.checkpoints import complete_checkpoints  # noqa: E402

STEPS = 6
FOX = "The quick brown fox jumps over the lazy dog."


def _run(scheduler, data: Path, workers: int, batch_size: int) -> tuple[dict, dict[int, float]]:
    params = {"model": "tiny-base", "data": str(data), "method": "lora", "max_steps": STEPS, "learning_rate": 2e-2,
              "block_size": 32, "batch_size": batch_size, "warmup_ratio": 0, "eval_every": STEPS, "save_every": 3,
              "lora_dropout": 0.0, "lora_r": 4, "name": f"fox-{workers}", "workers": workers,
              "keep_best": False}   # checkpoints every save_every steps, not at each validation
    job_id = scheduler.submit("train", params)
    try:
        job = wait_for(lambda: (lambda j: j if j["state"] not in ("queued", "running") else None)(scheduler.get(job_id)),
                       float(os.environ.get("LLMOS_TEST_TRAIN_WAIT", 400)), f"the {workers}-worker training job to end")
    except AssertionError as timed_out:   # say where it stood: the job's row and its log
        raise AssertionError(f"{timed_out}: {scheduler.get(job_id)}\n{scheduler.log_tail(job_id, 80)}") from None
    assert job["state"] == "succeeded", (job, scheduler.log_tail(job_id, 80))
    losses = {r["step"]: r["loss"] for r in scheduler.metrics(job_id) if "loss" in r}
    return job, losses


def test_two_ray_train_workers_follow_the_loss_of_one_process_with_twice_the_batch(scheduler, tmp_path):
    model = tiny_models.make_causal_lm(tmp_path / "tiny-base", seed=1)   # on the shared path: both nodes see it
    catalog = Catalog(scheduler.store)
    spec = catalog.resolve(str(model))
    spec.name = "tiny-base"
    catalog.register(spec)
    data = tmp_path / "fox.txt"
    data.write_text("\n\n".join([FOX] * 30))

    one, one_losses = _run(scheduler, data, workers=1, batch_size=4)
    two, two_losses = _run(scheduler, data, workers=2, batch_size=2)

    assert "Ray Train workers" in scheduler.log_tail(two["id"], 400)
    assert sorted(one_losses) == sorted(two_losses) == list(range(1, STEPS + 1))   # rank 0 alone feeds the curve
    assert one_losses[STEPS] < one_losses[1] - 0.05, one_losses   # it learned: the match is not of two flat lines
    for step in one_losses:
        assert two_losses[step] == pytest.approx(one_losses[step], rel=1e-3), (step, one_losses, two_losses)
    assert two["result"]["steps"] == STEPS and two["result"]["tokens_seen"] == one["result"]["tokens_seen"]
    assert [c.name for c in complete_checkpoints(scheduler.settings.jobs_dir / str(two["id"]) / "checkpoints")] \
        == ["checkpoint-3", "checkpoint-6"]
    assert catalog.get("fox-2").data["adapter"] is True
