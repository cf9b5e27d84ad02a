"""Benchmark of the monitor: what watching the machine costs the machine.

1. The sampler's own CPU time per second at 1 Hz, as a share of one core (target: at most 1 %),
   against a baseline measured in the same run: a plain psutil pass over every process
   (cpu_percent, memory_info, cmdline), the way a simple top-like tool samples.
2. The Streamlit server's CPU with one browser on the Monitor page, against the same server idle
   with no browser (same run, same machine).

    python bench/monitor.py [--seconds 30] [--skip-page]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from llmos_core.monitor import Sampler  # noqa: E402
from llmos_core.store import Store  # noqa: E402


def naive_sampler_cpu(seconds: float) -> float:
    """CPU seconds per second of a thread doing a plain psutil sweep at 1 Hz."""
    used = {"cpu": 0.0}
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(1.0):
            t0 = time.thread_time()
            psutil.cpu_percent(percpu=True)
            psutil.virtual_memory()
            for proc in psutil.process_iter():
                try:
                    proc.cpu_percent()
                    proc.memory_info()
                    proc.cmdline()
                except psutil.Error:
                    pass
            used["cpu"] += time.thread_time() - t0

    thread = threading.Thread(target=loop, daemon=True)
    start = time.monotonic()
    thread.start()
    time.sleep(seconds)
    stop.set()
    thread.join()
    return used["cpu"] / (time.monotonic() - start)


def llmos_sampler_cpu(seconds: float) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "llmos.db")
        sampler = Sampler(store, server_pid=None, persist=True)
        start = time.monotonic()
        sampler.start()
        time.sleep(seconds)
        sampler.stop()
        elapsed = time.monotonic() - start
        store.close()
        return sampler.cpu_seconds / elapsed, sampler.samples_taken


def tree_cpu(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def server_cpu(seconds: float, with_browser: str | None) -> float:
    """Share of one core the Streamlit server used over `seconds`, with a browser on a page or none."""
    from conftest import CHROMIUM, CHROMIUM_ARGS, AppServer
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        server = AppServer(Path(folder) / "home")
        try:
            proc = psutil.Process(server.process.pid)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(f"{server.url}/{with_browser or ''}")
                page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=120_000)
                time.sleep(5)    # first draws and imports settle
                if not with_browser:
                    page.close()  # the idle baseline: the server with its threads and nobody watching
                    time.sleep(3)
                c0, t0 = tree_cpu(proc), time.monotonic()
                time.sleep(seconds)
                share = (tree_cpu(proc) - c0) / (time.monotonic() - t0)
                browser.close()
        finally:
            server.stop()
    return share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--skip-page", action="store_true")
    args = parser.parse_args()
    print(f"machine: {psutil.cpu_count()} cores, load {psutil.getloadavg()[0]:.1f} at start, "
          f"{len(psutil.pids())} processes")

    naive = naive_sampler_cpu(args.seconds)
    ours, samples = llmos_sampler_cpu(args.seconds)
    print(f"sampler CPU at 1 Hz: {ours * 100:.2f} % of one core ({ours * 1000:.1f} ms per second, {samples} samples); "
          f"target <= 1 %: {'met' if ours <= 0.01 else 'MISSED'}")
    print(f"  baseline, plain psutil sweep: {naive * 100:.2f} % of one core; ratio sampler/baseline {ours / naive:.2f}")

    if not args.skip_page:
        idle = server_cpu(args.seconds, None)
        watched = server_cpu(args.seconds, "monitor")
        print(f"server CPU, idle app, no browser (baseline): {idle * 100:.1f} % of one core")
        print(f"server CPU, one browser on Monitor (1 s redraw): {watched * 100:.1f} % of one core; "
              f"ratio {watched / idle:.1f}x the idle server")


if __name__ == "__main__":
    main()
