"""The long fuzz of every document parser: the hypothesis strategies of tests/unit/test_translation_fuzz.py
with many more examples and bigger inputs, then each format's slowest input (of 200 characters or more) per size band, as
microseconds per character (linear parsers keep that flat as inputs grow). Exits 1 on a failure.

    python bench/fuzz_parsers.py                 # 2,000 inputs a format, of 400 to 4,000 pieces (1-40 characters)
    python bench/fuzz_parsers.py --examples 200
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from hypothesis import HealthCheck, given, settings  # noqa: E402

from unit.test_translation_fuzz import check, documents_of  # noqa: E402

BANDS = (1_000, 5_000, 20_000, 10**9)


def fuzz(fmt: str, examples: int, max_atoms: int) -> dict[int, tuple[float, str]]:
    """{size band: (slowest microseconds per character, that input's first 60 characters)}."""
    slowest: dict[int, tuple[float, str]] = defaultdict(lambda: (0.0, ""))

    @settings(max_examples=examples, deadline=timedelta(seconds=10), database=None,
              suppress_health_check=list(HealthCheck))
    @given(documents_of(fmt, max_atoms, min_size=max_atoms // 10))
    def run(text):
        started = time.process_time()
        check(fmt, text)
        if len(text) < 200:   # a parse's fixed cost would swamp the per-character figure
            return
        per_char = (time.process_time() - started) * 1e6 / len(text)
        band = next(b for b in BANDS if len(text) <= b)
        if per_char > slowest[band][0]:
            slowest[band] = (per_char, text[:60])

    run()
    return dict(slowest)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--max-atoms", type=int, default=4000, help="pieces per input (a piece is 1-40 characters)")
    args = parser.parse_args()
    failed = False
    for fmt in ("txt", "md", "srt", "html"):
        started = time.perf_counter()
        try:
            slowest = fuzz(fmt, args.examples, args.max_atoms)
        except Exception as exc:   # hypothesis has printed the falsifying example
            print(f"{fmt}: FAILED: {type(exc).__name__}: {exc}")
            failed = True
            continue
        bands = ", ".join(f"<= {b:,}: {us:.2f} us/char" if b < 10**9 else f"larger: {us:.2f} us/char"
                          for b, (us, _) in sorted(slowest.items()))
        print(f"{fmt}: {args.examples} inputs in {time.perf_counter() - started:.0f} s; slowest per size band: {bands}",
              flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
