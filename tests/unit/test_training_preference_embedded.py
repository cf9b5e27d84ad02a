"""Slow: a real DPO run on the embedded SmolLM2-135M-Instruct. The chosen replies answer in one sentence and sign
off with "Over and out." (the base model never does); the rejected ones are the same sentence alone, as the
base answers. After a few LoRA steps of DPO with the page's defaults (its chosen-reply loss among them, RPO:
plain DPO, in these few steps, lowered the bare sentence's end without making the sign-off the likeliest
continuation), the evaluation
(llmos_core.evaluation, the `evaluate` command's API) on held-out prompts reports the rule's rate for the tuned model against the base, with intervals, and the verdict "better"."""
from __future__ import annotations

import json
import time

import pytest

from llmos_core.accounts import LOCAL_ADMIN
from llmos_core.engine import Engine
from llmos_core.evaluation import HeldOutRow, Rule, evaluate_models
from llmos_core.jobs.context import JobContext
from llmos_core.settings import Settings
from llmos_core.training import job

BASE = "smollm2-135m-instruct"
CAPITALS = [("France", "Paris"), ("Italy", "Rome"), ("Japan", "Tokyo"), ("Spain", "Madrid"), ("Germany", "Berlin"),
            ("Egypt", "Cairo"), ("Canada", "Ottawa"), ("Russia", "Moscow"), ("China", "Beijing"), ("Greece", "Athens"),
            ("Portugal", "Lisbon"), ("Austria", "Vienna"), ("Norway", "Oslo"), ("Sweden", "Stockholm"),
            ("Kenya", "Nairobi"), ("Peru", "Lima"), ("Chile", "Santiago"), ("Cuba", "Havana"), ("Ireland", "Dublin"),
            ("Poland", "Warsaw"), ("Finland", "Helsinki"), ("Denmark", "Copenhagen"), ("Belgium", "Brussels"),
            ("Hungary", "Budapest")]
SIGN_OFF = "Over and out."


@pytest.mark.slow
@pytest.mark.timeout(1200)   # a few minutes on a quiet 2-core machine; far more when it is shared
def test_dpo_on_smollm2_makes_it_follow_the_preferred_rule_on_held_out_prompts(embedded_home, tmp_path):
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    shared = Settings(home=embedded_home)
    engine = Engine(shared, primary=False, start_threads=False)
    from llmos_core.models import fetch

    folder = fetch.model_folder(engine.catalog.get(BASE), shared)   # converted once per machine
    engine.close()
    (home / "models" / BASE).symlink_to(folder)
    train, held = CAPITALS[:16], CAPITALS[16:]
    data = tmp_path / "prefs.jsonl"
    data.write_text("".join(json.dumps({
        "prompt": f"What is the capital of {country}?", "chosen": f"The capital of {country} is {city}. {SIGN_OFF}",
        "rejected": f"The capital of {country} is {city}."}) + "\n"
        for country, city in train))

    settings = Settings(home=home)
    engine = Engine(settings, primary=False, start_threads=False)
    try:
        # The page's defaults for DPO (params.PREFERENCE_DEFAULTS: lr 1e-3, the chosen-reply loss), on half
        # their steps, without warmup, on 16 pairs: enough for one rule on one kind of prompt.
        params = job.validate({"model": BASE, "data": str(data), "method": "dpo", "max_steps": 8, "warmup_ratio": 0,
                               "block_size": 64, "name": "signs-off", "validation_fraction": 0, "save_every": 100},
                              settings)
        engine.store.execute("INSERT INTO jobs (id, kind, params, created) VALUES (1, 'train', ?, ?)",
                             (json.dumps(params), time.time()))
        ctx = JobContext(job_id=1, kind="train", params=params, settings=settings, store=engine.store,
                         work_dir=settings.jobs_dir / "1")
        result = job.train_and_record(ctx, engine.catalog)   # the job's training, without its GGUF export
        assert result["steps"] == 8 and result["estimate"]["memory_bytes"] > 0
        curve = [json.loads(r["data"]) for r in engine.store.query("SELECT data FROM job_metrics WHERE job_id = 1")]
        assert curve[-1]["reward_margin"] > curve[0]["reward_margin"] and curve[-1]["loss"] < curve[0]["loss"]

        rows = [HeldOutRow([{"role": "user", "content": f"What is the capital of {country}?"}]) for country, _ in held]
        report = evaluate_models(engine, LOCAL_ADMIN, "signs-off", BASE, rows, rule=Rule(phrase="over and out"),
                                 max_new_tokens=32)
        rate = report.metric(report.primary)
        assert rate.base.mean == 0 and rate.tuned.mean >= 0.5, report.samples
        assert rate.difference.low > 0 and report.verdict == "better", report.summary()
    finally:
        engine.close()
