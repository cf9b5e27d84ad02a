"""Benchmark: a side-by-side comparison (usecases/compare.py) against the same answers one after another.

Two embedded models (smollm2-135m-instruct and gemma-3-270m, served as `auto` picks: llama.cpp on the CPU)
answer one prompt. Baseline: model A's answer, then model B's, through the generation service. Compared:
both at once through a Comparison. Figures: the wall time of the whole, and when the last model's first
token came (what a person waits for before every column is moving). Runs alternate and take medians.
Usage: python bench/compare.py [--tokens 48] [--repeats 3] [--home FOLDER]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmos_core.engine import Engine  # noqa: E402
from llmos_core.generation import SamplingParams  # noqa: E402
from llmos_core.settings import Settings  # noqa: E402
from llmos_core.usecases import compare  # noqa: E402
from llmos_core.accounts import LOCAL_ADMIN

MODELS = ["smollm2-135m-instruct", "gemma-3-270m"]
PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def one_after_another(engine, params) -> tuple[float, float]:
    """-> (wall seconds, seconds until the last model's first token)."""
    started = time.perf_counter()
    last_first = 0.0
    for name in MODELS:
        begun = time.perf_counter() - started
        result = engine.chat.generate(name, [{"role": "user", "content": PROMPT}], params)
        last_first = begun + (result.stats["ttft_s"] or 0.0)
    return time.perf_counter() - started, last_first


def side_by_side(engine, params) -> tuple[float, float]:
    comparison = compare.start_comparison(engine, LOCAL_ADMIN, MODELS, PROMPT, params=params)
    started = time.perf_counter()
    first: dict[str, float] = {}
    with comparison.running() as updates:
        for answer in updates:
            if answer.text and answer.model not in first:
                first[answer.model] = time.perf_counter() - started
    engine.comparisons.delete(LOCAL_ADMIN, comparison.saved_id)   # the shared test folder keeps no bench comparisons
    return time.perf_counter() - started, max(first.values())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--home", default=os.environ.get("LLMOS_TEST_EMBEDDED_HOME",
                                                         str(Path.home() / ".cache" / "llmos-test-embedded")))
    args = parser.parse_args()
    engine = Engine(Settings.from_env(home=args.home), primary=False, start_threads=False)
    params = SamplingParams(do_sample=False, max_new_tokens=args.tokens, repetition_penalty=1.1)
    try:
        comparison = compare.start_comparison(engine, LOCAL_ADMIN, MODELS, PROMPT, params=params)
        for answer in compare.models_to_load(engine, comparison):
            compare.load_model(engine, answer)
        print("backends:", ", ".join(f"{a.model} {a.backend}" for a in comparison.answers))
        one_after_another(engine, params)   # warm-up: first requests pay one-time costs
        base, both = [], []
        for _ in range(args.repeats):
            base.append(one_after_another(engine, params))
            both.append(side_by_side(engine, params))
        b_wall, b_first = (statistics.median(x) for x in zip(*base))
        c_wall, c_first = (statistics.median(x) for x in zip(*both))
        load = os.getloadavg()[0]
        print(f"one after another: {b_wall:.2f} s in all, last first token at {b_first:.2f} s")
        print(f"side by side:      {c_wall:.2f} s in all, last first token at {c_first:.2f} s")
        print(f"wall time {b_wall / c_wall:.2f}x faster side by side; last first token {b_first / c_first:.1f}x sooner "
              f"(load average {load:.1f}, {args.tokens} tokens, median of {args.repeats})")
    finally:
        engine.close()


if __name__ == "__main__":
    main()
