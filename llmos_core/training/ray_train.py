"""Data-parallel training on a Ray cluster: Ray Train's TorchTrainer runs the same training run on N workers.

    worker (job.run: a Ray job's driver, LLMOS_CLUSTER) --TorchTrainer.fit--> train_loop x N (Ray actors)

Ray places the N workers (a CPU each, or `threads` CPUs, the estimated memory, a GPU when the cluster has
enough) and sets up torch.distributed among them (gloo on the CPU, NCCL on GPUs) with RANK and WORLD_SIZE
in their environment, so transformers' Trainer wraps the model in DDP as it does under torchrun. Each
worker rebuilds the job's context from the store (the data folder is at the same path on every node) and
runs trainer.train(); rank 0 alone writes the loss curve, the checkpoints' marks and the result file
(distributed.run_rank), which this driver returns. Stop: the driver writes the stop file that every rank
reads at the end of a step (distributed.py), so all stop at the same step with a checkpoint.
"""
from __future__ import annotations

import json
import os
import threading
import time

from ..errors import JobError
from .distributed import RESULT_FILE, STOP_FILE


def launch(ctx, workers: int, worker_memory: int) -> dict:
    """In the job's worker (the Ray job driver): fit on `workers` Ray Train workers, forward Stop, return
    rank 0's result."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    stop, result = ctx.work_dir / STOP_FILE, ctx.work_dir / RESULT_FILE
    stop.unlink(missing_ok=True)
    result.unlink(missing_ok=True)
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), logging_level="WARNING")
    totals = ray.cluster_resources()
    use_gpu = ctx.settings.device != "cpu" and totals.get("GPU", 0) >= workers
    per_worker = {"CPU": float(ctx.settings.threads or 1), "memory": float(worker_memory)}
    check_room(totals, workers, per_worker)
    ctx.log.info("data-parallel training on %d Ray Train workers (%s, each %s)", workers,
                 "GPUs, NCCL" if use_gpu else "CPUs, gloo", per_worker)
    ctx.progress(0.05, f"starting {workers} Ray Train workers")
    trainer = TorchTrainer(
        train_loop, train_loop_config={"job_id": ctx.job_id, "resume": ctx.resume, "workers": workers,
                                       "use_gpu": use_gpu},
        # trainer_resources: Ray's default gives the trainer actor 1 CPU, packed into the first worker's bundle, so
        # a cluster of 1-CPU nodes could never place rank 0 and the run waited for ever; the actor only
        # coordinates (the loop runs in the workers), so it takes no CPU
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu, resources_per_worker=per_worker,
                                     trainer_resources={"CPU": 0}),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=RunConfig(name=f"llmos-job-{ctx.job_id}", storage_path=str(ctx.work_dir / "ray_train")))
    failure: list[BaseException] = []

    def fit() -> None:
        try:
            trainer.fit()
        except BaseException as exc:   # handed to the driver's thread below
            failure.append(exc)

    thread = threading.Thread(target=fit, name="ray-train-fit", daemon=True)
    thread.start()
    while thread.is_alive():
        if ctx.cancelled() and not stop.exists():
            stop.write_text("stop\n")   # the ranks save a checkpoint together, then end
        time.sleep(0.5)
    if failure or not result.exists():
        raise JobError(f"training on {workers} Ray Train workers failed: "
                       f"{_last_line(failure[0]) if failure else 'rank 0 wrote no result'}",
                       "the job's log has each worker's output")
    return json.loads(result.read_text())


def check_room(totals: dict, workers: int, per_worker: dict) -> None:
    """JobError now, rather than a run that waits for ever, when the whole cluster cannot hold the workers
    (Ray would keep them pending until a node joins). Memory is Ray's logical figure, as it places by it."""
    for resource, each in per_worker.items():
        have = float(totals.get(resource, 0))
        if each * workers > have:
            what = (f"{have / 1e9:.1f} GB of memory for {workers} workers of {each / 1e9:.1f} GB"
                    if resource == "memory" else f"{have:g} {resource}s for {workers} workers of {each:g}")
            raise JobError(f"the Ray cluster has {what}", "train on fewer workers, or add nodes to the cluster")


def train_loop(config: dict) -> None:
    """One Ray Train worker: the same run as a torchrun rank, on the placement the driver chose."""
    from .distributed import run_rank

    run_rank(config["job_id"], config["resume"], world=config["workers"], cpu=not config["use_gpu"])


def _last_line(exc: BaseException) -> str:
    """Ray wraps a worker's exception in its own; its last line names the error that ended the run."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
