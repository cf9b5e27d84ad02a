"""`train`: fine-tune a model on a data file, as a job of the scheduler.

    python -m llmos_core train --model gemma-3-270m --data notes.txt [--method lora|full|dpo|orpo|kto] [--steps N]
        [--weights lora|full] [--beta B] (preference methods: --data holds prompt/chosen/rejected or, for kto,
        prompt/completion/label rows)
        [--lr X] [--preset "Quick LoRA"] [--name my-model] [--workers N] [--wait] [--estimate-only] [--json]

The data is checked and copied under the data folder before the job is queued; the estimate (memory,
time, cost) is printed; --wait follows the job (step, loss, ETA) and prints the result. Ctrl-C while
waiting stops the job with a checkpoint (`jobs resume ID` continues it). --workers N trains on N Ray Train
workers of the cluster (LLMOS_CLUSTER); on one machine the GPUs train together through torchrun (--gpus).
"""
from __future__ import annotations

import sys
import time

from ..engine import Engine
from ..jobs.scheduler import FINISHED
from ..present import format_bytes, format_duration
from ..settings import Settings
from ..usecases import train as train_usecase
from ..training.export import describe_export
from . import acting_user, print_json


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="fine-tune a model on your data (LoRA or full, or on preferences: DPO, ORPO, KTO), as a job")
    train_usecase.add_cli_options(p)   # one flag per TrainParams knob, its help, type and choices from there
    p.add_argument("--priority", type=int, default=0, help="higher starts first (default 0)")
    p.add_argument("--estimate-only", action="store_true", help="check the data and print the estimate; queue nothing")
    p.add_argument("--wait", action="store_true", help="follow the job until it ends and print the result")
    p.add_argument("--no-start", action="store_true", help="do not start a background scheduler if none runs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def describe_estimate(figures: dict) -> str:
    plan = figures.get("plan") or {}
    lines = [f"device: {figures['device']} ({figures['precision']})",
             f"memory: about {format_bytes(figures['memory_bytes'])}"]
    if figures.get("workers", 1) > 1:
        lines[-1] += f" ({figures['workers']} Ray Train workers of {format_bytes(figures['worker_memory_bytes'])})"
    if plan:
        lines.append(f"data: {plan['rows']} rows ({plan['shape']}), {plan['tokens']} tokens -> "
                     f"{plan['train_blocks']} training and {plan['validation_blocks']} validation blocks")
    timing = figures.get("time")
    if timing:
        lines.append(f"time: about {format_duration(timing['seconds'])} for {timing['steps']} steps "
                     f"({timing['flops'] / 1e12:.2f} TFLOP at {timing['flops_per_s'] / 1e9:.0f} GFLOP/s: {timing['source']})")
    if figures.get("cost") is not None:
        lines.append(f"cost: about {figures['cost']:.2f} at {figures['price_per_hour']:g} an hour")
    return "\n".join(lines)


def run(args) -> int:
    settings = Settings.from_env()
    engine = Engine(settings, primary=False, start_threads=False)
    try:
        checked = train_usecase.check_run(train_usecase.params_from_cli(args), settings)
        clean, figures = checked.params, checked.estimate
        if args.estimate_only:
            print_json({"params": clean, "estimate": figures}) if args.json else print(describe_estimate(figures))
            return 0
        scheduler = engine.scheduler
        job_id = train_usecase.submit(engine, acting_user(args, engine.store), checked, args.priority)
        if not scheduler.is_alive() and not args.no_start:
            from .models import ensure_server

            ensure_server(settings)
        if not args.json:
            print(f"job {job_id} queued: {checked.describe()}\n{describe_estimate(figures)}", flush=True)
        if not args.wait:
            if args.json:
                print_json({"id": job_id, "params": clean, "estimate": figures})
            return 0
        job = follow(scheduler, job_id, quiet=args.json)
    finally:
        engine.close()
    if args.json:
        print_json(job)
    else:
        print(summarize(job))
    return 0 if job["state"] == "succeeded" else 1


def follow(scheduler, job_id: int, quiet: bool = False) -> dict:
    """Print a line per new step until the job ends; Ctrl-C stops the job with a checkpoint."""
    last_step = -1
    try:
        while True:
            job = scheduler.get(job_id)
            rows = [r for r in scheduler.metrics(job_id) if "loss" in r]
            if rows and rows[-1]["step"] != last_step and not quiet:
                row = rows[-1]
                last_step = row["step"]
                extra = f", {row['tokens_per_s']:.0f} tokens/s" if row.get("tokens_per_s") else ""
                eta = f", ETA {format_duration(row['eta_s'])}" if row.get("eta_s") is not None else ""
                print(f"step {row['step']}: loss {row['loss']:.4f}{extra}{eta}", flush=True)
            if job["state"] in FINISHED:
                return job
            time.sleep(1.0)
    except KeyboardInterrupt:
        scheduler.cancel(job_id)
        print(f"\nstopping job {job_id}; it saves a checkpoint (`python -m llmos_core jobs resume {job_id}` "
              "continues it)", file=sys.stderr)
        raise


def summarize(job: dict) -> str:
    result = job.get("result") or {}
    if job["state"] != "succeeded":
        return f"job {job['id']} {job['state']}: {job['message']}"
    if result.get("stopped"):
        return f"job {job['id']} stopped at step {result['steps']}; checkpoint {result.get('checkpoint')} kept"
    before, after = result.get("before", {}), result.get("after", {})
    lines = [f"{result['model']} is in the catalog ({result['method']} on {result['base_model']}, "
             f"{result['steps']} steps)"]
    if result.get("best_step") is not None and result["best_step"] != result["steps"]:
        lines.append(f"kept the best checkpoint, step {result['best_step']} (validation loss "
                     f"{result['best_eval_loss']:.4f})" + ("; stopped early" if result.get("stopped_early") else ""))
    if describe_export(result.get("export")):
        lines.append(describe_export(result.get("export")))
    if before.get("reward_accuracy") is not None and after.get("reward_accuracy") is not None:
        lines.append(f"validation loss {before['loss']:.4f} -> {after['loss']:.4f}, the chosen reply preferred in "
                     f"{before['reward_accuracy']:.0%} -> {after['reward_accuracy']:.0%} of the held-out pairs")
    elif before.get("perplexity") is not None:
        lines.append(f"validation loss {before['loss']:.4f} -> {after['loss']:.4f}, "
                     f"perplexity {before['perplexity']:.2f} -> {after['perplexity']:.2f}")
    estimate, actual = result.get("estimate", {}), result.get("actual", {})
    lines.append(f"time: estimated {format_duration(estimate.get('seconds'))}, took {format_duration(actual.get('seconds'))}; "
                 f"memory: estimated {format_bytes(estimate.get('memory_bytes'))}, peak {format_bytes(actual.get('memory_bytes'))}")
    for prompt, old, new in zip(result.get("prompts", []), before.get("samples", []), after.get("samples", [])):
        lines.append(f"  prompt: {prompt!r}\n    before: {old!r}\n    after:  {new!r}")
    return "\n".join(lines)
