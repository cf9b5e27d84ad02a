"""Benchmark of the monitor: what watching the machine costs the machine.

1. The sampler's own CPU time per second at 1 Hz, as a share of one core (target: at most 1 %),
   against a baseline measured in the same run: a plain psutil pass over every process
   (cpu_percent, memory_info, cmdline), the way a simple top-like tool samples.
2. The Streamlit server's CPU with 1 and with 5 browsers on the Monitor page (target: 5 viewers
   under 10 % of one core in all), against the same server idle with no browser, and the bytes a
   second the server sends each viewer (websocket frames and live feed responses, counted in the browser).

    python bench/monitor.py [--seconds 30] [--skip-page] [--skip-sampler] [--viewers 1,5]
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


def server_cpu(seconds: float, viewers: tuple[int, ...]) -> list[tuple[int, float, float]]:
    """For each number of browsers on the Monitor page: (viewers, share of one core the server used,
    bytes a second the server sent each viewer). One server for all, so 0 viewers is the baseline."""
    from conftest import CHROMIUM, CHROMIUM_ARGS, AppServer
    from playwright.sync_api import sync_playwright

    results = []
    with tempfile.TemporaryDirectory() as folder:
        server = AppServer(Path(folder) / "home")
        try:
            proc = psutil.Process(server.process.pid)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                warm = browser.new_page()            # the engine starts on the first visit: not measured
                warm.goto(f"{server.url}/monitor", timeout=180_000, wait_until="commit")
                warm.wait_for_selector('iframe[src*="live_chart"]', timeout=180_000)
                warm.close()
                for count in viewers:
                    print(f"  measuring {count} viewer(s)...", flush=True)
                    received = [0]
                    pages = [open_viewer(browser, f"{server.url}/monitor", received) for _ in range(count)]
                    # Playwright's sync API hands over websocket events only while it is called: wait through it.
                    wait = pages[0].wait_for_timeout if pages else (lambda ms: time.sleep(ms / 1000))
                    wait(8000 if count else 3000)    # first draws and imports settle
                    received[0] = 0
                    c0, t0 = tree_cpu(proc), time.monotonic()
                    wait(seconds * 1000)
                    elapsed = time.monotonic() - t0
                    share = (tree_cpu(proc) - c0) / elapsed
                    results.append((count, share, received[0] / elapsed / count if count else 0.0))
                    print(f"  {count} viewer(s): {share * 100:.1f} % of one core, "
                          f"{results[-1][2]:.0f} bytes/s per viewer", flush=True)
                    for page in pages:
                        page.close()
                browser.close()
        finally:
            server.stop()
    return results


def open_viewer(browser, url: str, received: list[int]):
    """A browser tab on `url` in a context of its own (its own Streamlit session), counting the bytes it gets."""
    page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    page.on("websocket", lambda ws: ws.on("framereceived", lambda frame: received.__setitem__(
        0, received[0] + len(frame if isinstance(frame, (bytes, str)) else b""))))
    # The live feed, fetched by the chart's frame itself: its bodies count too (headers alone, no round trip).
    page.on("response", lambda response: received.__setitem__(0, received[0] + int(
        response.headers.get("content-length") or 0)) if "live_feed" in response.url else None)
    page.goto(url, timeout=180_000, wait_until="commit")   # a loaded 2-core machine: patience
    # The live chart's frame, not "script not running": with fragments every second the page is seldom idle.
    page.wait_for_selector('iframe[src*="live_chart"]', timeout=180_000)
    return page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--skip-page", action="store_true")
    parser.add_argument("--skip-sampler", action="store_true")
    parser.add_argument("--viewers", default="1,5", help="numbers of browsers on the Monitor page, comma-separated")
    args = parser.parse_args()
    print(f"machine: {psutil.cpu_count()} cores, load {psutil.getloadavg()[0]:.1f} at start, "
          f"{len(psutil.pids())} processes")

    if not args.skip_sampler:
        sampler_figures(args.seconds)
    if not args.skip_page:
        page_figures(args.seconds, tuple(int(n) for n in args.viewers.split(",")))


def sampler_figures(seconds: float) -> None:
    naive = naive_sampler_cpu(seconds)
    ours, samples = llmos_sampler_cpu(seconds)
    print(f"sampler CPU at 1 Hz: {ours * 100:.2f} % of one core ({ours * 1000:.1f} ms per second, {samples} samples); "
          f"target <= 1 %: {'met' if ours <= 0.01 else 'MISSED'}")
    print(f"  baseline, plain psutil sweep: {naive * 100:.2f} % of one core; ratio sampler/baseline {ours / naive:.2f}")


def page_figures(seconds: float, viewers: tuple[int, ...]) -> None:
    results = server_cpu(seconds, (0, *viewers))
    idle = results[0][1]
    print(f"server CPU, idle app, no browser (baseline): {idle * 100:.1f} % of one core")
    for count, share, sent in results[1:]:
        target = "" if count != 5 else f"; target 5 viewers < 10 %: {'met' if share < 0.10 else 'MISSED'}"
        print(f"server CPU, {count} browser(s) on Monitor (5 min window): {share * 100:.1f} % of one core, "
              f"ratio {share / max(idle, 1e-9):.1f}x the idle server; {sent:.0f} bytes/s sent per viewer{target}")


if __name__ == "__main__":
    main()
