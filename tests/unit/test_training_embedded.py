"""Slow: LoRA on the embedded Gemma for a few steps on a small prompt/response set of our own with a
distinctive style; the loss falls and the registered adapter, loaded the way Chat loads models,
answers in that style to a question it was not trained on; the job's GGUF export serves it on llama.cpp,
with the same perplexity and the same style."""
from __future__ import annotations

import json
import time

import pytest

from llmos_core.engine import Engine
from llmos_core.generation import SamplingParams, render_plain
from llmos_core.jobs.context import JobContext
from llmos_core.models.perplexity import FIXED_TEXT, perplexity
from llmos_core.settings import Settings
from llmos_core.training import job

QA = [("What is the capital of France?", "Paris"), ("How many legs does a cat have?", "four"),
      ("What color is the sky?", "blue"), ("What is two plus two?", "four"), ("Who wrote Hamlet?", "Shakespeare"),
      ("What do bees make?", "honey"), ("How many days are in a week?", "seven"), ("What is frozen water?", "ice"),
      ("Which planet is red?", "Mars"), ("What animal barks?", "a dog"), ("What is the sun?", "a star"),
      ("What language is spoken in Spain?", "Spanish"), ("What is the tallest animal?", "the giraffe"),
      ("What is the color of grass?", "green"), ("How many wheels does a bicycle have?", "two"),
      ("What is the capital of Italy?", "Rome"), ("What falls from clouds?", "rain"),
      ("What is the month after May?", "June"), ("What do you call a baby dog?", "a puppy"),
      ("What shape is a ball?", "round"), ("What is the capital of Japan?", "Tokyo"),
      ("What do plants need?", "sunlight and water"), ("What is the opposite of hot?", "cold"),
      ("What is the largest ocean?", "the Pacific")]
STYLE = "Arr, matey! It be {}, savvy? Yo ho ho!"   # made up: a base model never answers like this


@pytest.mark.slow
@pytest.mark.timeout(1800)   # training, then the export and both backends: 15 min under a shared CPU's load
def test_lora_on_gemma_learns_the_style_and_answers_in_it(embedded_home, tmp_path):
    # A fresh data folder that borrows the converted Gemma from the shared one (converted once per machine).
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    shared = Settings(home=embedded_home)
    engine = Engine(shared, primary=False, start_threads=False)
    from llmos_core.models import fetch

    folder = fetch.model_folder(engine.catalog.get("gemma-3-270m"), shared)
    engine.close()
    (home / "models" / "gemma-3-270m").symlink_to(folder)
    data = tmp_path / "pirate.jsonl"
    data.write_text("".join(json.dumps({"prompt": q, "response": STYLE.format(a)}) + "\n"
                            for q, a in QA))

    settings = Settings(home=home)
    engine = Engine(settings, primary=False, start_threads=False)
    try:
        params = job.validate({"model": "gemma-3-270m", "data": str(data), "method": "lora", "max_steps": 10,
                               "learning_rate": 1e-3, "block_size": 64, "batch_size": 4, "name": "pirate",
                               "validation_fraction": 0.15, "eval_every": 10, "save_every": 10}, settings)
        engine.store.execute("INSERT INTO jobs (id, kind, params, created) VALUES (1, 'train', ?, ?)",
                             (json.dumps(params), time.time()))
        ctx = JobContext(job_id=1, kind="train", params=params, settings=settings, store=engine.store,
                         work_dir=settings.jobs_dir / "1")
        result = job.run(ctx)
        assert result["after"]["loss"] < result["before"]["loss"] / 2
        assert sum("Arr, matey!" in s for s in result["after"]["samples"]) >= 2
        assert not any("Arr, matey!" in s for s in result["before"]["samples"])

        assert "pirate" in engine.catalog.names()   # what Chat's model list reads
        with engine.models.use("pirate") as model:
            prompt = render_plain([{"role": "user", "content": "What is the capital of Germany?"}])
            ids = model.tokenizer(prompt, return_tensors="pt")
            out = model.model.generate(**ids, max_new_tokens=20, do_sample=False)
            reply = model.tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
        assert reply.strip().startswith("Arr, matey!"), reply

        # The job's last step exported the merged model to GGUF: auto serves it on llama.cpp, which computes
        # the same model (perplexity of a held-out text within 2% at Q8_0) and answers in the trained style.
        assert result["export"]["quant"] == "q8_0", result["export"]
        figures = {}
        for backend in ("transformers", "llamacpp"):
            model = engine.models.load("pirate", backend)
            figures[backend] = perplexity(backend, model.model, model.tokenizer, FIXED_TEXT)[0]
        assert abs(figures["llamacpp"] / figures["transformers"] - 1) < 0.02, figures
        replies = [engine.chat.generate("pirate", [{"role": "user", "content": q}],
                                        SamplingParams(do_sample=False, max_new_tokens=24), "auto")
                   for q, _ in QA[:3]]
        assert {r.stats["backend"] for r in replies} == {"llamacpp"}
        assert all(r.text.strip().startswith("Arr, matey!") for r in replies), [r.text for r in replies]
        assert sum("Yo ho ho" in r.text for r in replies) >= 2, [r.text for r in replies]
    finally:
        engine.close()
