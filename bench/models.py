"""Benchmark: first load (GGUF -> safetensors conversion) against a cached load, per embedded model,
and the memory estimate against what the load measured (live tensors, and the process's RSS growth).

Each load runs in a fresh process so RSS figures are not polluted by an earlier load.
Targets: cached load >= 10x faster than the first; estimate within 20% of the measured figure.
Usage: python bench/models.py [--models smollm2-135m-instruct gemma-3-270m]
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


def one_load(name: str, home: str) -> dict:
    import psutil

    from llmos_core.device import release_memory
    from llmos_core.engine import Engine
    from llmos_core.settings import Settings

    engine = Engine(Settings(home=Path(home)), primary=False, start_threads=False)
    estimate = engine.models.estimate(name)
    release_memory(engine.device)
    rss_before = psutil.Process().memory_info().rss
    started = time.perf_counter()
    model = engine.models.load(name)
    seconds = time.perf_counter() - started
    release_memory(engine.device)
    rss_after = psutil.Process().memory_info().rss
    return {"name": name, "seconds": seconds, "estimated": estimate, "measured": model.measured_bytes,
            "rss_delta": rss_after - rss_before}


def run_child(name: str, home: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", name, home], capture_output=True, text=True,
                         env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["smollm2-135m-instruct", "gemma-3-270m"])
    parser.add_argument("--child", nargs=2)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_load(*args.child)))
        return
    mb = 1024**2
    with tempfile.TemporaryDirectory() as home:
        for name in args.models:
            first = run_child(name, home)     # converts: de-quantize the GGUF, write safetensors
            cached = run_child(name, home)    # reads the safetensors written above
            speedup = first["seconds"] / cached["seconds"]
            est_vs_tensors = cached["estimated"] / cached["measured"]
            est_vs_rss = cached["estimated"] / cached["rss_delta"] if cached["rss_delta"] > 0 else float("nan")
            print(f"{name}: first load {first['seconds']:.1f} s, cached load {cached['seconds']:.2f} s "
                  f"-> cached is {speedup:.1f}x faster (target >= 10x)")
            print(f"{name}: estimated {cached['estimated'] / mb:.0f} MB, measured tensors {cached['measured'] / mb:.0f} MB "
                  f"(ratio {est_vs_tensors:.2f}), process RSS grew {cached['rss_delta'] / mb:.0f} MB "
                  f"(ratio {est_vs_rss:.2f}); target within 0.80-1.20")


if __name__ == "__main__":
    main()
