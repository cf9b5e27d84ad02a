"""Preference tuning against supervised fine-tuning, one run: DPO and ORPO (LoRA) against SFT on the chosen
replies alone (the `lora` method on the same file), each on the same 60 pairs and step budget, on the
embedded SmolLM2-135M-Instruct. The chosen replies follow a rule the base model does not (one sentence, then
the sign-off "Over and out."); the rejected ones are the same sentence alone, as the base answers. DPO and
ORPO run with the Train page's defaults (params.PREFERENCE_DEFAULTS: what a user who changes nothing gets),
SFT with the same rate and steps; --steps / --lr change all three.

Per method: the rule's rate on 30 held-out prompts (greedy replies, llmos_core.evaluation with its bootstrap
interval and verdict against the base; the base's replies generated once), minutes of training, peak memory
against the estimate. Each training runs in its own process (the peak is the process's). The machine is shared: the load average is printed.

    python bench/preference.py [--steps N] [--lr X] [--methods lora,dpo,orpo] [--json out.json]
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BASE = "smollm2-135m-instruct"
SIGN_OFF = "Over and out."
MAX_NEW_TOKENS = 32   # one sentence and the sign-off take about 15 tokens
CAPITALS = [("France", "Paris"), ("Italy", "Rome"), ("Japan", "Tokyo"), ("Spain", "Madrid"), ("Germany", "Berlin"),
            ("Egypt", "Cairo"), ("Canada", "Ottawa"), ("Russia", "Moscow"), ("China", "Beijing"), ("Greece", "Athens"),
            ("Portugal", "Lisbon"), ("Austria", "Vienna"), ("Norway", "Oslo"), ("Sweden", "Stockholm"),
            ("Kenya", "Nairobi"), ("Peru", "Lima"), ("Chile", "Santiago"), ("Cuba", "Havana"), ("Ireland", "Dublin"),
            ("Poland", "Warsaw"), ("Finland", "Helsinki"), ("Denmark", "Copenhagen"), ("Belgium", "Brussels"),
            ("Hungary", "Budapest"), ("Thailand", "Bangkok"), ("Mexico", "Mexico City"), ("Turkey", "Ankara"),
            ("Vietnam", "Hanoi"), ("Nepal", "Kathmandu"), ("Ghana", "Accra")]
OPPOSITES = [("hot", "cold"), ("big", "small"), ("fast", "slow"), ("up", "down"), ("light", "dark"), ("old", "new"),
             ("happy", "sad"), ("open", "closed"), ("early", "late"), ("full", "empty"), ("hard", "soft"),
             ("rich", "poor"), ("strong", "weak"), ("wet", "dry"), ("loud", "quiet"), ("long", "short"),
             ("high", "low"), ("thick", "thin"), ("clean", "dirty"), ("near", "far"), ("day", "night"),
             ("win", "lose"), ("buy", "sell"), ("push", "pull"), ("first", "last"), ("give", "take"),
             ("inside", "outside"), ("true", "false"), ("begin", "end"), ("friend", "enemy")]
COLOURS = [("grass", "green"), ("the sky", "blue"), ("snow", "white"), ("coal", "black"), ("a banana", "yellow"),
           ("a tomato", "red"), ("an orange", "orange"), ("a lemon", "yellow"), ("milk", "white"), ("blood", "red"),
           ("a carrot", "orange"), ("chocolate", "brown"), ("the sea", "blue"), ("a leaf", "green"),
           ("a strawberry", "red"), ("an eggplant", "purple"), ("charcoal", "black"), ("a flamingo", "pink"),
           ("a lime", "green"), ("cotton", "white"), ("a crow", "black"), ("a pumpkin", "orange"),
           ("a cherry", "red"), ("sand", "beige"), ("a plum", "purple"), ("ivory", "white"), ("soot", "black"),
           ("a canary", "yellow"), ("rust", "brown"), ("a sapphire", "blue")]


def examples() -> list[tuple[str, str]]:
    """(question, one-sentence answer), three kinds interleaved so the held-out share has each kind."""
    rows = []
    for (country, city), (word, opposite), (thing, colour) in zip(CAPITALS, OPPOSITES, COLOURS):
        rows += [(f"What is the capital of {country}?", f"The capital of {country} is {city}."),
                 (f"What is the opposite of {word}?", f"The opposite of {word} is {opposite}."),
                 (f"What colour is {thing}?", f"{thing[0].upper() + thing[1:]} is {colour}.")]
    return rows


def pairs(rows: list[tuple[str, str]]) -> list[dict]:
    return [{"prompt": q, "chosen": f"{a} {SIGN_OFF}", "rejected": a} for q, a in rows]


def budget(steps: int | None, lr: float | None) -> dict:
    """The Train page's defaults for a preference method (params.PREFERENCE_DEFAULTS: what a user who changes
    nothing gets), with --steps / --lr over them; SFT gets the same steps, rate and warmup (the same budget)."""
    from llmos_core.training.params import PREFERENCE_DEFAULTS

    shared = {k: v for k, v in PREFERENCE_DEFAULTS["dpo"].items() if k in SHARED}
    return {**shared, **({"max_steps": steps} if steps else {}), **({"learning_rate": lr} if lr else {})}


SHARED = ("max_steps", "epochs", "learning_rate", "warmup_ratio", "lora_r", "lora_alpha", "lora_targets", "block_size",
          "batch_size")


def train_one(home: Path, data: Path, method: str, overrides: dict, out: Path) -> None:
    """In a child process: one training run, through the train job's own code, its result to `out`. Every
    setting not given is what the page gives (TrainParams with the method's defaults); all 60 pairs train
    (no validation share: the held-out prompts are the test)."""
    from llmos_core.jobs.context import JobContext
    from llmos_core.models.catalog import Catalog
    from llmos_core.settings import Settings
    from llmos_core.store import Store
    from llmos_core.training import job

    settings = Settings(home=home)
    store = Store(settings.db_path)
    params = job.validate({"model": BASE, "data": str(data), "method": method, "name": f"bench-{method}",
                           "validation_fraction": 0, "save_every": 10_000, **overrides}, settings)
    job_id = store.execute("INSERT INTO jobs (kind, params, created) VALUES ('train', ?, ?)",
                           (json.dumps(params), time.time())).lastrowid
    ctx = JobContext(job_id=job_id, kind="train", params=params, settings=settings, store=store,
                     work_dir=settings.jobs_dir / str(job_id))
    result = job.train_and_record(ctx, Catalog(store))
    keep = ("train_seconds", "steps", "estimate", "actual", "train_loss")
    out.write_text(json.dumps({**{k: result.get(k) for k in keep},
                               "settings": {k: params.get(k) for k in SHARED + ("beta", "sft_weight")}}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, help="optimizer steps (default: the page's default for DPO)")
    ap.add_argument("--lr", type=float, help="learning rate (default: the page's default for DPO)")
    ap.add_argument("--methods", default="lora,dpo,orpo", help="which to train (lora: SFT on the chosen replies)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", nargs=4, metavar=("HOME", "DATA", "METHOD", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        home, data, method, out = args.child
        given = {**({"max_steps": args.steps} if args.steps else {}), **({"learning_rate": args.lr} if args.lr else {})}
        overrides = budget(args.steps, args.lr) if method == "lora" else given   # dpo, orpo: their own defaults
        return train_one(Path(home), Path(data), method, overrides, Path(out))

    from llmos_core.accounts import LOCAL_ADMIN
    from llmos_core.engine import Engine
    from llmos_core.evaluation import Rule
    from llmos_core.models import fetch
    from llmos_core.settings import Settings

    rows = examples()
    train, held = rows[:60], rows[60:90]
    tmp = Path(tempfile.mkdtemp(prefix="bench-preference-"))
    home = tmp / "home"
    (home / "models").mkdir(parents=True)
    shared = Settings(home=Path(os.environ.get("LLMOS_TEST_EMBEDDED_HOME", Path.home() / ".cache" / "llmos-test-embedded")))
    engine = Engine(shared, primary=False, start_threads=False)
    folder = fetch.model_folder(engine.catalog.get(BASE), shared)   # converted once per machine
    engine.close()
    (home / "models" / BASE).symlink_to(folder)
    data = tmp / "prefs.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in pairs(train)))
    started_all = time.perf_counter()
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; {len(train)} pairs, "
          f"budget {budget(args.steps, args.lr)}; held out: {len(held)} prompts", flush=True)

    from llmos_core.evaluation import bootstrap, metrics
    from llmos_core.evaluation.run import generate_all
    from llmos_core.generation import SamplingParams

    rule = Rule(phrase=SIGN_OFF.rstrip("."))
    prompts = [[{"role": "user", "content": q}] for q, _ in held]

    def replies(name: str) -> list[str]:   # evaluate_models' own steps; the base's replies generated once
        engine = Engine(Settings(home=home, offline=True), primary=False, start_threads=False)
        try:
            return generate_all(engine, LOCAL_ADMIN, name, prompts,
                                SamplingParams(do_sample=False, max_new_tokens=MAX_NEW_TOKENS))
        finally:
            engine.close()

    base_scores = [rule.holds(r) for r in replies(BASE)]
    print(f"{metrics.RULE} = {rule.describe()}; base: {sum(base_scores)}/{len(held)}", flush=True)
    figures = {}
    for method in args.methods.split(","):   # each evaluated as soon as it is trained: a row at a time
        out = tmp / f"{method}.json"
        flags = (["--steps", str(args.steps)] if args.steps else []) + (["--lr", str(args.lr)] if args.lr else [])
        subprocess.run([sys.executable, __file__, *flags, "--child", str(home), str(data), method, str(out)],
                       check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        f = figures[method] = json.loads(out.read_text())
        started = time.perf_counter()
        tuned = replies(f"bench-{method}")
        paired = bootstrap.paired_bootstrap([rule.holds(r) for r in tuned], base_scores)
        f.update(rule_rate=paired.tuned.mean, rule_low=paired.tuned.low, rule_high=paired.tuned.high,
                 base_rate=paired.base.mean, verdict=bootstrap.verdict(paired.difference), sample=tuned[0])
        print(f"{method}: trained in {f['train_seconds'] / 60:.2f} min with {f['settings']}; rule rate "
              f"{f['rule_rate']:.2f} ({f['rule_low']:.2f}-{f['rule_high']:.2f}), {f['verdict']}; evaluated in "
              f"{(time.perf_counter() - started) / 60:.1f} min; load {os.getloadavg()[0]:.1f}; first reply "
              f"{tuned[0]!r}", flush=True)

    print(f"\n{'method':8} {'rule rate (95% CI)':>22} {'base':>6} {'verdict':>8} {'minutes':>8} {'peak GB':>8} "
          f"{'estimate GB':>12} {'peak/est':>9}")
    for method, f in figures.items():
        peak, est = f["actual"]["memory_bytes"], f["estimate"]["memory_bytes"]
        name = "sft" if method == "lora" else method
        print(f"{name:8} {f['rule_rate']:>8.2f} ({f['rule_low']:.2f}-{f['rule_high']:.2f}) {f['base_rate']:>6.2f} "
              f"{f['verdict']:>8} {f['train_seconds'] / 60:>8.2f} {peak / 1e9:>8.2f} {est / 1e9:>12.2f} "
              f"{peak / est:>9.2f}")
    print(f"load average after: {os.getloadavg()[0]:.1f}; whole run {(time.perf_counter() - started_all) / 60:.1f} min")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
