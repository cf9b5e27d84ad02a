"""Training throughput and the time estimate, measured in one run.

    python bench/train.py [--model gemma-3-270m] [--steps 10] [--block 128] [--batch 4]

1. Baseline: a plain transformers Trainer + peft LoRA script (no LLM OS), in its own process, on the
   same model folder, the same token blocks and the same LoRA settings.
2. LLM OS: the same LoRA run submitted as a job to the scheduler (worker process, callbacks, metrics
   in SQLite, before/after evaluation), twice: the first estimate has no earlier run to learn from
   (matmul benchmark x default efficiency), the second learns from the first.
Prints tokens/s of each and the ratio (target >= 0.9x), and estimated vs actual training time
(target within 30%). Uses a fresh data folder; the embedded model's converted folder is linked in.

    python bench/train.py --estimates [--steps 6]

3. The estimates a person sees before the first run, against what the run measured, for each embedded
   model x method (LoRA, full; batch 4 x 128 by default): memory against the worker's peak RSS (target
   within 15%) and time against the training time (target within 30%), each job in a fresh data folder
   with no earlier run to learn from; `--convert` also leaves the GGUF unconverted, so the job converts it
   first (what the very first run does).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TEXT = ("LLM OS runs language models on this machine. It can chat, translate documents, and fine-tune a model "
        "on your own text, while a monitor shows what the CPU, the memory and the GPUs are doing. ")


def baseline(folder: str, data: str, steps: int, block: int, batch: int, r: int, out: str) -> None:
    """The plain script: what a user would write by hand with transformers and peft."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments, set_seed

    set_seed(42)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids: list[int] = []
    for paragraph in Path(data).read_text().split("\n\n"):
        ids += [tokenizer.bos_token_id] + tokenizer(paragraph, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    blocks = [{"input_ids": ids[i:i + block], "labels": ids[i:i + block]} for i in range(0, len(ids) - block + 1, block)]
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.05, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    args = TrainingArguments(output_dir=tempfile.mkdtemp(), max_steps=steps, per_device_train_batch_size=batch,
                             learning_rate=2e-4, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
                             disable_tqdm=True, optim="adamw_torch", remove_unused_columns=False)

    def collate(rows):
        return {k: torch.tensor([r[k] for r in rows]) for k in ("input_ids", "labels")}

    trainer = Trainer(model=model, args=args, train_dataset=blocks, data_collator=collate)
    started = time.time()
    trainer.train()
    seconds = time.time() - started
    Path(out).write_text(json.dumps({"tokens": steps * batch * block, "seconds": seconds}))


def run_llmos(home: Path, model: str, data: Path, steps: int, block: int, batch: int, r: int, name: str,
              method: str = "lora", validation: float = 0.05) -> dict:
    from llmos_core.engine import Engine
    from llmos_core.settings import Settings

    engine = Engine(Settings.from_env(home=home))
    try:
        job_id = engine.scheduler.submit("train", {
            "model": model, "data": str(data), "method": method, "max_steps": steps, "block_size": block,
            "batch_size": batch, "lora_r": r, "lora_alpha": 2 * r, "name": name,
            "learning_rate": 2e-4 if method == "lora" else 5e-5, "validation_fraction": validation,
            "save_every": 10 * steps, "eval_every": 10 * steps})   # like the script: no mid-run eval or save
        while engine.scheduler.get(job_id)["state"] not in ("succeeded", "failed", "cancelled", "interrupted"):
            time.sleep(1)
        job = engine.scheduler.get(job_id)
        if job["state"] != "succeeded":
            raise SystemExit(f"the LLM OS job {job['state']}: {job['message']}\n{engine.scheduler.log_tail(job_id, 30)}")
        return job["result"]
    finally:
        engine.close()


def fresh_home(model: str, link_converted: bool) -> tuple[Path, Path, Path]:
    """(data folder, converted model folder, data file): a new data folder, the converted model linked in
    unless the run is to convert it itself."""
    from llmos_core.engine import Engine
    from llmos_core.models import fetch
    from llmos_core.settings import Settings

    home = Path(tempfile.mkdtemp(prefix="llmos-bench-train-"))
    shared = Settings.from_env()
    engine = Engine(shared, primary=False, start_threads=False)
    spec = engine.catalog.get(model)
    folder = fetch.model_folder(spec, shared)   # converted once per machine, then linked into the bench home
    engine.close()
    if spec.source == "embedded" and link_converted:
        (home / "models").mkdir(parents=True)
        (home / "models" / spec.name).symlink_to(folder)
    data = home / "bench.txt"
    data.write_text("\n\n".join(f"{i}. {TEXT}" for i in range(400)))
    return home, folder, data


def estimates(args) -> None:
    """Each embedded model x method in a fresh data folder, in its own process: estimate against measured."""
    if args.one:
        model, method = args.one
        home, _, data = fresh_home(model, link_converted=not args.convert)
        os.environ.update(LLMOS_HOME=str(home), LLMOS_EXPORT_GGUF="0")
        # No validation share: no evaluation or samples before and after, only loading, training and saving.
        result = run_llmos(home, model, data, args.steps, args.block, args.batch, args.lora_r, "bench", method, 0.0)
        print(json.dumps({"estimate": result["estimate"], "actual": result["actual"], "steps": result["steps"]}))
        return
    print(f"{args.steps} steps of {args.batch} x {args.block} tokens, {os.cpu_count()} CPUs, "
          f"{'the GGUF converted by the job' if args.convert else 'converted folder linked in'}; "
          f"load average {os.getloadavg()[0]:.2f}")
    for model in args.models.split(","):
        for method in args.methods.split(","):
            out = subprocess.run([sys.executable, __file__, "--estimates", "--one", model, method, "--steps",
                                  str(args.steps), "--block", str(args.block), "--batch", str(args.batch)]
                                 + (["--convert"] if args.convert else []), capture_output=True, text=True)
            if out.returncode:
                print(f"{model} {method}: failed\n{out.stderr[-2000:]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            est, act = r["estimate"], r["actual"]
            print(f"{model:24s} {method:4s}  memory {est['memory_bytes'] / 2**30:5.2f} GiB est / "
                  f"{act['memory_bytes'] / 2**30:5.2f} GiB peak = {est['memory_bytes'] / act['memory_bytes']:.2f}x"
                  f"   time {est['seconds'] or 0:6.1f} s est / {act['seconds']:6.1f} s = "
                  f"{(est['seconds'] or 0) / act['seconds']:.2f}x  [{est['source']}]; "
                  f"load average {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--block", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--baseline", nargs=3, metavar=("FOLDER", "DATA", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--estimates", action="store_true", help="memory and time estimates against measured")
    parser.add_argument("--models", default="gemma-3-270m,smollm2-135m-instruct")
    parser.add_argument("--methods", default="lora,full")
    parser.add_argument("--convert", action="store_true", help="with --estimates: the job converts the GGUF")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.estimates:
        estimates(args)
        return
    if args.baseline:
        baseline(args.baseline[0], args.baseline[1], args.steps, args.block, args.batch, args.lora_r, args.baseline[2])
        return

    home, folder, data = fresh_home(args.model, link_converted=True)
    print(f"model {args.model}, LoRA r={args.lora_r}, {args.steps} steps of {args.batch} x {args.block} tokens, "
          f"{os.cpu_count()} CPUs")

    out = home / "baseline.json"
    subprocess.run([sys.executable, __file__, "--baseline", str(folder), str(data), str(out), "--steps",
                    str(args.steps), "--block", str(args.block), "--batch", str(args.batch), "--lora-r",
                    str(args.lora_r)], check=True, env={**os.environ, "LLMOS_HOME": str(home)},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = json.loads(out.read_text())
    base_tps = base["tokens"] / base["seconds"]
    print(f"plain Trainer script: {base_tps:8.1f} tokens/s ({base['seconds']:.1f} s)")

    os.environ["LLMOS_HOME"] = str(home)
    runs = []
    for i, label in enumerate(("first job (estimate from the matmul benchmark)", "second job (estimate learned)")):
        result = run_llmos(home, args.model, data, args.steps, args.block, args.batch, args.lora_r, f"bench-{i}")
        tps = result["tokens_seen"] / result["train_seconds"]
        est, actual = result["estimate"]["seconds"], result["train_seconds"]
        runs.append((tps, est, actual))
        print(f"LLM OS {label}: {tps:8.1f} tokens/s ({actual:.1f} s) = {tps / base_tps:.2f}x the plain script; "
              f"estimate {est:.1f} s vs actual {actual:.1f} s = {est / actual:.2f}x "
              f"[{result['estimate']['source']}]")
    best = max(r[0] for r in runs)
    print(f"\nthroughput ratio (best LLM OS job / plain script): {best / base_tps:.2f}x   (target >= 0.90x)")
    print(f"estimate / actual, learned: {runs[1][1] / runs[1][2]:.2f}x   (target 0.70x-1.30x); "
          f"first, unlearned: {runs[0][1] / runs[0][2]:.2f}x")


if __name__ == "__main__":
    main()
