"""Benchmark: transformers decoding beside llama.cpp in one process (one OpenMP pool or two).

torch and llama.cpp load one libgomp (same soname), which keeps a pool of worker threads per thread that ran a
parallel region; with more pool threads than CPUs its barriers sleep instead of spinning (llama_compute.py).
Each case runs in a fresh process: Gemma 3 270M on transformers (fp32) replies to a short prompt with 64
greedy tokens, three times (the best reply's tokens/s counts), either alone ("alone") or after SmolLM2 on
llama.cpp has loaded and replied in the same process ("after-llama"). Printed: tokens/s of each case and the
ratio after-llama / alone (1.0: llama.cpp's pool costs transformers nothing).
Usage: python bench/omp_pool.py [--home DIR] [--cases alone after-llama]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CASES = ("alone", "after-llama")


def one_case(case: str, home: str) -> dict:
    from llmos_core.engine import Engine
    from llmos_core.generation.request import SamplingParams
    from llmos_core.settings import Settings

    settings = Settings(home=Path(home), prompt_lookup=False)
    engine = Engine(settings, primary=False, start_threads=False)
    greedy = SamplingParams(do_sample=False, max_new_tokens=64)
    messages = [{"role": "user", "content": "Write a short story about a river and a mountain."}]
    try:
        if case == "after-llama":
            engine.models.load("smollm2-135m-instruct", "llamacpp")
            engine.chat.generate("smollm2-135m-instruct", messages, greedy, backend="llamacpp")
        engine.models.load("gemma-3-270m", "transformers")
        rates = []
        for _ in range(3):
            stats = engine.chat.generate("gemma-3-270m", messages, greedy, backend="transformers").stats
            rates.append(stats["tokens_per_s"])
    finally:
        engine.close()
    return {"case": case, "rates": rates, "best": max(rates)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", default=str(Path.home() / ".cache" / "llmos-bench-estimates"),
                        help="data folder with Gemma 3 270M's fp32 conversion (bench/estimates.py makes it)")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=CASES)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_case(args.one, args.home)))
        return 0
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")
    best = {}
    for case in args.cases:
        done = subprocess.run([sys.executable, __file__, "--home", args.home, "--one", case],
                              capture_output=True, text=True, timeout=1200)
        if done.returncode != 0:
            print(f"{case:<12} failed: {done.stderr.strip().splitlines()[-1:]}")
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        best[case] = row["best"]
        print(f"{case:<12} Gemma 3 270M fp32 decode tok/s: {', '.join(f'{r:.1f}' for r in row['rates'])}"
              f" (best {row['best']:.1f})")
    if len(best) == 2:
        print(f"after-llama / alone: {best['after-llama'] / best['alone']:.2f}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
