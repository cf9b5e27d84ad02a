"""Benchmark: an evaluation's replies with 4 requests in flight per model (`parallel=4`, so the generation
service batches them) against one at a time (the default, evaluation/run.py's PARALLEL), on the embedded models.

Both runs evaluate smollm2-135m-instruct against gemma-3-270m on the same prompts (greedy, `auto` backend:
llama.cpp where it is built) with the rule metric, so the only difference is how many replies are in
flight. Figures: wall seconds of each (models loaded before timing), the ratio, and whether the two runs
gave the same replies (batched greedy decoding may differ in the last digits of the logits).
Usage: python bench/evaluation.py [--prompts 12] [--tokens 32] [--home FOLDER]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmos_core.accounts import LOCAL_ADMIN  # noqa: E402
from llmos_core.engine import Engine  # noqa: E402
from llmos_core.evaluation import HeldOutRow, Rule, evaluate_models  # noqa: E402
from llmos_core.settings import Settings  # noqa: E402

TUNED, BASE = "smollm2-135m-instruct", "gemma-3-270m"
TOPICS = ["the sea", "a lighthouse", "bread", "winter", "a bicycle", "the moon", "tea", "a library", "rain",
          "a violin", "mountains", "a garden", "trains", "coffee", "a river", "snow"]


def timed(engine, rows, tokens: int, parallel: int):
    started = time.perf_counter()
    report = evaluate_models(engine, LOCAL_ADMIN, TUNED, BASE, rows, ["rule"], rule=Rule(regex=r"\."),
                             max_new_tokens=tokens, parallel=parallel)
    return time.perf_counter() - started, report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--home", default=os.environ.get("LLMOS_TEST_EMBEDDED_HOME",
                                                         str(Path.home() / ".cache" / "llmos-test-embedded")))
    args = parser.parse_args()
    engine = Engine(Settings.from_env(home=args.home), primary=False, start_threads=False)
    rows = [HeldOutRow([{"role": "user", "content": f"Write one sentence about {TOPICS[i % len(TOPICS)]}."}])
            for i in range(args.prompts)]
    try:
        timed(engine, rows[:2], 4, 1)                            # load both models and warm up, untimed
        sequential, one = timed(engine, rows, args.tokens, 1)
        parallel, many = timed(engine, rows, args.tokens, 4)
    finally:
        engine.close()
    same = one.samples == many.samples
    print(f"{args.prompts} prompts x 2 models, {args.tokens} new tokens, greedy")
    print(f"one request at a time: {sequential:.1f} s")
    print(f"4 in flight per model: {parallel:.1f} s  ({sequential / parallel:.2f}x faster)")
    print(f"same first replies both ways: {same}; rule rate tuned {many.metric('rule').tuned.mean:.2f}, "
          f"base {many.metric('rule').base.mean:.2f}")


if __name__ == "__main__":
    main()
