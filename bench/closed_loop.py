"""The closed loop, measured in one run: fine-tune the embedded Gemma (LoRA, a made-up style), let the job
export it to GGUF, then serve the fine-tune on both backends.

    python bench/closed_loop.py [--steps 10] [--tokens 64] [--threads N]

Prints, for the trained model:
  - decoding tokens/s on llama.cpp (the exported Q8_0 GGUF) against transformers fp32 (target >= 4x);
  - the export step's seconds against the training run's (the job's own figures);
  - perplexity of a fixed held-out text on both forms (target: within 2%), and the style markers of the
    greedy replies on llama.cpp.
Uses a fresh data folder; the embedded model's converted folder is linked in from LLMOS_TEST_EMBEDDED_HOME
(default ~/.cache/llmos-test-embedded, where the tests keep it).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "unit"))

from test_training_embedded import QA, STYLE  # noqa: E402 (the test's data: one source of truth)

from llmos_core.engine import Engine  # noqa: E402
from llmos_core.generation import SamplingParams  # noqa: E402
from llmos_core.jobs.context import JobContext  # noqa: E402
from llmos_core.models import fetch  # noqa: E402
from llmos_core.models.perplexity import FIXED_TEXT, perplexity  # noqa: E402
from llmos_core.settings import Settings  # noqa: E402
from llmos_core.training import job  # noqa: E402


def fresh_home(steps: int, threads: int | None) -> tuple[Settings, dict]:
    shared = Settings(home=Path(os.environ.get("LLMOS_TEST_EMBEDDED_HOME",
                                               Path.home() / ".cache" / "llmos-test-embedded")))
    engine = Engine(shared, primary=False, start_threads=False)
    folder = fetch.model_folder(engine.catalog.get("gemma-3-270m"), shared)
    engine.close()
    home = Path(tempfile.mkdtemp(prefix="llmos-closed-loop-"))
    (home / "models").mkdir(parents=True)
    (home / "models" / "gemma-3-270m").symlink_to(folder)
    data = home / "style.jsonl"
    data.write_text("".join(json.dumps({"prompt": q, "response": STYLE.format(a)}) + "\n" for q, a in QA))
    settings = Settings(home=home, threads=threads)
    params = job.validate({"model": "gemma-3-270m", "data": str(data), "method": "lora", "max_steps": steps,
                           "learning_rate": 1e-3, "block_size": 64, "batch_size": 4, "name": "styled",
                           "validation_fraction": 0.15, "eval_every": steps, "save_every": steps}, settings)
    return settings, params


def speed(engine: Engine, backend: str, tokens: int) -> float:
    messages = [{"role": "user", "content": "Tell me about the river and the old town."}]
    greedy = SamplingParams(do_sample=False, max_new_tokens=tokens)
    engine.chat.generate("styled", messages, SamplingParams(do_sample=False, max_new_tokens=4), backend)  # warm-up
    reply = engine.chat.generate("styled", messages, greedy, backend)
    return reply.stats["tokens_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    settings, params = fresh_home(args.steps, args.threads)
    engine = Engine(settings, primary=False, start_threads=False)
    try:
        engine.store.execute("INSERT INTO jobs (id, kind, params, created) VALUES (1, 'train', ?, ?)",
                             (json.dumps(params), time.time()))
        ctx = JobContext(job_id=1, kind="train", params=params, settings=settings, store=engine.store,
                         work_dir=settings.jobs_dir / "1")
        result = job.run(ctx)
        export = result["export"]
        print(f"training: {result['steps']} steps in {result['train_seconds']:.1f} s; export to {export['quant']}: "
              f"{export['seconds']:.1f} s ({export['seconds'] / result['train_seconds']:.2f}x the training), "
              f"{export['bytes'] / 1e6:.0f} MB")
        figures = {}
        for backend in ("transformers", "llamacpp"):
            model = engine.models.load("styled", backend)
            figures[backend] = perplexity(backend, model.model, model.tokenizer, FIXED_TEXT)[0]
        print(f"perplexity of the fixed text: transformers fp32 {figures['transformers']:.3f}, llama.cpp "
              f"{export['quant']} {figures['llamacpp']:.3f} ({(figures['llamacpp'] / figures['transformers'] - 1) * 100:+.2f}%)")
        slow, fast = speed(engine, "transformers", args.tokens), speed(engine, "llamacpp", args.tokens)
        print(f"decoding, one stream, greedy, {args.tokens} tokens: transformers fp32 {slow:.1f} tokens/s, "
              f"llama.cpp {export['quant']} {fast:.1f} tokens/s: {fast / slow:.2f}x (target >= 4x)")
        prompts = [q for q, _ in QA[:3]]
        styled = 0
        for prompt in prompts:
            reply = engine.chat.generate("styled", [{"role": "user", "content": prompt}],
                                         SamplingParams(do_sample=False, max_new_tokens=24), "llamacpp").text
            styled += STYLE.split("{}")[0].strip() in reply
        print(f"greedy replies on llama.cpp in the trained style: {styled} of {len(prompts)}")
    finally:
        engine.close()


if __name__ == "__main__":
    main()
