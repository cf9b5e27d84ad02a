"""What the concurrency benchmarks share: start n calls together, each in its own thread, and time them."""
from __future__ import annotations

import threading
import time
from typing import Any, Callable


def run_at_once(work: Callable[[int], Any], n: int) -> tuple[list, float]:
    """work(0) ... work(n - 1), each in its own thread, all started together: (their results, wall seconds)."""
    results: list = [None] * n

    def one(i: int) -> None:
        results[i] = work(i)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.perf_counter() - started
