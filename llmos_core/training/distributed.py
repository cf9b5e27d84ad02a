"""Data-parallel training on more than one GPU: the job's worker starts torchrun, one process per GPU.

    worker (job.run) --torchrun--> python -m llmos_core.training.distributed JOB_ID   (RANK 0..N-1)

Every rank rebuilds the job's context from the store and runs trainer.train(); the Trainer sees the
torchrun environment and wraps the model in DDP. Rank 0 alone writes metrics, samples and the result
(to work_dir/result.json, which the worker returns). Stop: the worker writes a stop file; each rank
reads it at the end of a step and all-reduces the flag, so every rank stops at the same step.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from ..errors import JobError

STOP_FILE, RESULT_FILE = "stop", "result.json"


def launch(ctx, placement) -> dict:
    """In the worker: run torchrun, forward Stop, return rank 0's result."""
    stop, result = ctx.work_dir / STOP_FILE, ctx.work_dir / RESULT_FILE
    stop.unlink(missing_ok=True)
    result.unlink(missing_ok=True)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={placement.world}",
               "-m", "llmos_core.training.distributed", str(ctx.job_id), "1" if ctx.resume else "0"]
    ctx.log.info("data-parallel training on %d GPUs: %s", placement.world, " ".join(command))
    process = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "4")})
    while process.poll() is None:
        if ctx.cancelled() and not stop.exists():
            stop.write_text("stop\n")   # the ranks save a checkpoint together, then end
        time.sleep(0.5)
    if process.returncode != 0 or not result.exists():
        raise JobError(f"data-parallel training failed (torchrun exit code {process.returncode})")
    return json.loads(result.read_text())


def main(argv: list[str]) -> int:
    run_rank(int(argv[0]), argv[1] == "1")
    return 0


def run_rank(job_id: int, resume: bool, world: int | None = None, cpu: bool = False) -> None:
    """One rank: the same context as the worker's, then the same training run; rank 0 writes the result.
    Under torchrun the placement is chosen here; Ray Train's workers give the world and the device
    (ray_train.py): each sees only the GPU Ray gave it, or is told to stay on the CPU."""
    from ..jobs.context import JobContext
    from ..models.catalog import Catalog
    from ..settings import Settings
    from ..store import Store
    from .params import TrainParams
    from .model import Placement, choose_placement
    from .trainer import train

    settings = Settings.from_env()
    store = Store(settings.db_path)
    row = store.query("SELECT * FROM jobs WHERE id = ?", (job_id,))[0]
    ctx = JobContext(job_id=job_id, kind="train", params=json.loads(row["params"]), settings=settings, store=store,
                     work_dir=settings.jobs_dir / str(job_id), resume=resume, owner=int(row["owner"]))
    placement = Placement("cpu", "fp32") if cpu else choose_placement(TrainParams.from_dict(ctx.params), settings)
    placement.world = world or placement.world
    out = train(ctx, Catalog(store), placement, stop_file=ctx.work_dir / STOP_FILE)
    if int(os.environ.get("RANK", "0")) == 0:
        path = Path(ctx.work_dir / RESULT_FILE)
        path.with_suffix(".tmp").write_text(json.dumps(out, default=str))
        path.with_suffix(".tmp").replace(path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
