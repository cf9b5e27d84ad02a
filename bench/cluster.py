"""Jobs on a Ray cluster against jobs on this machine, measured in the same run, loopback only.

It makes a network namespace with only `lo` up (root, like the cluster tests), runs itself inside it,
and there starts Ray nodes with `ray start` (one CPU each), so no traffic leaves the machine.
1. submit-to-start: from submit() to the benchmark job's first progress report in the store, through
   Ray Jobs against a local worker process (target: under 2 s more on Ray).
2. makespan of 8 one-CPU benchmark jobs (each sleeps SLEEP_S holding little memory) on two one-CPU
   nodes against the same 8 on one node (target: at least 1.8x shorter).
3. a training step of a LoRA run (a small random Llama, 4 layers of 256, block 128) on 2 Ray Train workers,
   one a node, batch B each, against 1 worker with batch 2B: the same data and the same global batch.
   Step time is the median gap between the loss rows rank 0 writes (the first step left out); the
   whole job's time shows the worker group's start.
Usage: sudo python bench/cluster.py [--runs N] [--only-train]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "cluster"))
sys.path.insert(0, str(ROOT / "tests"))

import loopback_ray  # noqa: E402
import tiny_models  # noqa: E402

from llmos_core.jobs.scheduler import JobScheduler  # noqa: E402
from llmos_core.settings import Settings  # noqa: E402
from llmos_core.store import Store  # noqa: E402

SLEEP_S = 6.0
JOBS = 8


TRAIN_STEPS = 12
TRAIN_BATCH = 8        # the global batch: one worker takes it whole, two take half each


def scheduler(home: Path, cluster: str | None) -> JobScheduler:
    # a thread a job: each "node" has one CPU; no GGUF export after the training runs (not measured)
    settings = Settings(home=home, cluster=cluster, threads=1, export_gguf=False)
    sched = JobScheduler(settings, Store(settings.db_path), poll_s=0.1, limits="")
    sched.start()
    return sched


def submit_to_start(sched: JobScheduler) -> float:
    start = time.perf_counter()
    job_id = sched.submit("benchmark", {"memory_mb": 10, "declare_mb": 100, "seconds": 1})
    while (sched.get(job_id)["progress"] or 0) == 0:
        if time.perf_counter() - start > 300:
            raise RuntimeError(f"job {job_id} did not start: {sched.get(job_id)}")
        time.sleep(0.02)
    took = time.perf_counter() - start
    while sched.get(job_id)["state"] in ("queued", "running"):
        time.sleep(0.1)
    return took


def makespan(sched: JobScheduler) -> float:
    start = time.perf_counter()
    ids = [sched.submit("benchmark", {"memory_mb": 10, "declare_mb": 100, "seconds": SLEEP_S}) for _ in range(JOBS)]
    while any(sched.get(i)["state"] in ("queued", "running") for i in ids):
        time.sleep(0.2)
    states = {sched.get(i)["state"] for i in ids}
    assert states == {"succeeded"}, states
    return time.perf_counter() - start


def small_model(folder: Path) -> Path:
    """A random Llama big enough that a step is compute, not overhead: 4 layers of 256 (about 3.5M parameters)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tokenizer = tiny_models.make_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=704, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def training_step(sched: JobScheduler, data: Path, workers: int) -> tuple[float, float]:
    """(median step seconds, whole job seconds) of one LoRA run on `workers` workers."""
    params = {"model": "bench-small", "data": str(data), "method": "lora", "max_steps": TRAIN_STEPS,
              "block_size": 128, "batch_size": TRAIN_BATCH // workers, "warmup_ratio": 0, "eval_every": TRAIN_STEPS,
              "save_every": TRAIN_STEPS, "validation_fraction": 0.05, "lora_dropout": 0.0, "name": f"bench-{workers}-{time.time_ns()}",
              "workers": workers}
    start = time.perf_counter()
    job_id = sched.submit("train", params)
    while sched.get(job_id)["state"] in ("queued", "running"):
        time.sleep(0.5)
    took = time.perf_counter() - start
    job = sched.get(job_id)
    assert job["state"] == "succeeded", (job, sched.log_tail(job_id, 60))
    stamps = [r["ts"] for r in sched.metrics(job_id) if "loss" in r]
    return statistics.median(b - a for a, b in zip(stamps[1:], stamps[2:])), took


def train_bench(sched: JobScheduler, base: Path) -> None:
    from llmos_core.models.catalog import Catalog

    catalog = Catalog(sched.store)
    spec = catalog.resolve(str(small_model(base / "bench-small")))
    spec.name = "bench-small"
    catalog.register(spec)
    data = base / "bench.txt"
    data.write_text("\n\n".join(tiny_models.CORPUS * 60))
    one, one_job = training_step(sched, data, 1)
    two, two_job = training_step(sched, data, 2)
    print(f"LoRA training step, global batch {TRAIN_BATCH} x 128 tokens: 1 worker {one:.2f} s, 2 Ray Train workers "
          f"{two:.2f} s: {one / two:.2f}x faster; whole job ({TRAIN_STEPS} steps) {one_job:.0f} s against "
          f"{two_job:.0f} s", flush=True)


def inside(runs: int, only_train: bool) -> None:
    base = Path(tempfile.mkdtemp(prefix="llmos-bench-"))
    loopback_ray.start_head(memory=4 * 10**9)
    ray = scheduler(base / "ray", loopback_ray.ADDRESS)
    if only_train:
        loopback_ray.start_node(memory=4 * 10**9)
        train_bench(ray, base)
        ray.stop()
        shutil.rmtree(base, ignore_errors=True)
        return
    local = scheduler(base / "local", None)
    local_s = [submit_to_start(local) for _ in range(runs)]
    ray_s = [submit_to_start(ray) for _ in range(runs)]
    lm, rm = statistics.median(local_s), statistics.median(ray_s)
    print(f"submit-to-start: local {lm:.2f} s, Ray {rm:.2f} s (median of {runs}): Ray adds {rm - lm:.2f} s "
          f"(target under 2 s) {'MET' if rm - lm < 2 else 'NOT MET'}", flush=True)
    one = makespan(ray)
    loopback_ray.start_node(memory=4 * 10**9)
    two = makespan(ray)
    print(f"{JOBS} one-CPU jobs of {SLEEP_S:g} s: one node {one:.1f} s, two nodes {two:.1f} s: {one / two:.2f}x "
          f"shorter (target 1.8x) {'MET' if one / two >= 1.8 else 'NOT MET'}", flush=True)
    train_bench(ray, base)
    ray.stop()
    local.stop()
    shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only-train", action="store_true", help="only the training step (3.)")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        loopback_ray.check_loopback_only()
        inside(args.runs, args.only_train)
        return
    done = loopback_ray.run_in_namespace([sys.executable, __file__, "--inside", "--runs", str(args.runs)]
                                         + (["--only-train"] if args.only_train else []),
                                         timeout=1800, capture=False)
    sys.exit(done.returncode)


if __name__ == "__main__":
    main()
