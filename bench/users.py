"""Benchmark: N visitors, each logged in as their own user in a browser context of their own, chatting at once.

For N = 1, 4 and 8 (one server, one Chromium): every visitor sends a message at the same moment; the time
to first text is measured in each page (from its Enter to the first reply text drawn), and the server's
memory (its process tree's RSS) after each round, against the same server before any visitor logged in
(the model already loaded by a warm-up visitor, not measured). Prints p50/p95 time to first text per N,
the ratio of each p50 to the one-visitor p50 of this run, and server memory per visitor.

    python bench/users.py [--visitors 1,4,8] [--tokens 32]

The embedded SmolLM2-135M-Instruct (the Chat page's default) answers; the first visit prepares it (a
minute or so on 2 cores). Needs Debian's chromium, as the browser tests do.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

PASSWORD = "visitor password"
MiB = 1024 ** 2

# In each page: when its last sent message got its first reply text (performance.now(), ms).
FIRST_TEXT = """
window.__llmosSent = null; window.__llmosFirst = null; window.__llmosBase = 0; window.__llmosDone = 0;
window.__llmosFigures = () => Array.from(document.querySelectorAll('[data-testid="stCaptionContainer"]'))
  .filter(e => /tokens · first token/.test(e.innerText)).length;   // one per saved reply
const replyText = (m) => Array.from(m.querySelectorAll('[data-testid="stMarkdownContainer"]'))
  .filter(e => !e.closest('[data-testid="stButton"]') && !e.closest('[data-testid="stCaptionContainer"]'))
  .map(e => e.innerText).join('').trim();
new MutationObserver(() => {
  if (window.__llmosSent === null || window.__llmosFirst !== null) return;
  const m = document.querySelectorAll('[data-testid="stChatMessage"]');
  if (m.length >= window.__llmosBase + 2 && replyText(m[m.length - 1]))
    window.__llmosFirst = performance.now();
}).observe(document, {childList: true, subtree: true, characterData: true});
"""


def seed(home: Path, count: int) -> None:
    from llmos_core.engine import Engine
    from llmos_core.settings import Settings

    engine = Engine(Settings(home=home), primary=False, start_threads=False)
    try:
        engine.accounts.add_user("root", PASSWORD, "admin")
        for i in range(count):
            engine.accounts.add_user(f"visitor{i}", PASSWORD, "user")
    finally:
        engine.close()


def visit(browser, url: str, name: str, tokens: int):
    """A visitor's own context, logged in, on the Chat page with short replies."""
    from browser_helpers import wait_idle

    page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    page.add_init_script(FIRST_TEXT)
    page.goto(f"{url}/chat", timeout=180_000)
    page.wait_for_selector('input[name="password"]', timeout=180_000)
    page.fill('input[name="name"]', name)
    page.fill('input[name="password"]', PASSWORD)
    page.click('button[type="submit"]')
    page.wait_for_selector('[data-testid="stChatInput"] textarea', timeout=180_000)
    wait_idle(page, 180_000)
    box = page.get_by_label("Max new tokens")
    if not box.is_visible():
        page.locator('[data-testid="stExpander"] summary', has_text="Sampling").click()
    box.fill(str(tokens))
    box.press("Enter")
    time.sleep(0.5)
    wait_idle(page, 180_000)
    return page


def send(page, text: str) -> None:
    page.evaluate("() => { window.__llmosBase = document.querySelectorAll('[data-testid=\"stChatMessage\"]').length;"
                  " window.__llmosDone = window.__llmosFigures();"
                  " window.__llmosFirst = null; window.__llmosSent = performance.now(); }")
    box = page.locator('[data-testid="stChatInput"] textarea')
    box.fill(text)
    box.press("Enter")


def wait_reply(page, timeout_ms: float = 300_000) -> float | None:
    """Seconds from this page's Enter to its first reply text, once the whole reply is saved; None (and
    what the page shows) when no reply came."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function("() => window.__llmosFirst !== null || document.querySelector('[data-testid=\"stAlert\"]')",
                               timeout=timeout_ms)
        page.wait_for_function("() => window.__llmosFigures() > window.__llmosDone"
                               " || document.querySelector('[data-testid=\"stAlert\"]')", timeout=timeout_ms)
    except PlaywrightTimeout:
        pass
    first = page.evaluate("() => window.__llmosFirst === null ? null : (window.__llmosFirst - window.__llmosSent) / 1000")
    if first is None:
        alerts = page.locator('[data-testid="stAlert"]').all_inner_texts()
        messages = page.locator('[data-testid="stChatMessage"]').all_inner_texts()
        print(f"    no reply: alerts {alerts[:2]}, last messages {[m[:80] for m in messages[-2:]]}", flush=True)
    return first


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc] + proc.children(recursive=True):
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", default="1,4,8")
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()
    rounds = [int(n) for n in args.visitors.split(",")]
    from conftest import CHROMIUM, CHROMIUM_ARGS, AppServer
    from playwright.sync_api import sync_playwright

    results = []
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder) / "home"
        home.mkdir(mode=0o700)
        seed(home, max(rounds))
        server = AppServer(home)
        try:
            proc = psutil.Process(server.process.pid)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                print("warming up (the model is prepared and loaded on its first use)...", flush=True)
                warm = visit(browser, server.url, "root", args.tokens)
                send(warm, "Hello!")
                if wait_reply(warm, 600_000) is None:
                    raise SystemExit("the warm-up visitor got no reply")
                warm.context.close()
                time.sleep(2)
                base = tree_rss(proc)
                print(f"server before any visitor: {base / MiB:.0f} MB", flush=True)
                pages = []
                for n in rounds:
                    while len(pages) < n:
                        pages.append(visit(browser, server.url, f"visitor{len(pages)}", args.tokens))
                    for i, page in enumerate(pages[:n]):
                        send(page, f"Say something kind to visitor {i}.")
                    answered = [wait_reply(page) for page in pages[:n]]
                    firsts = [f for f in answered if f is not None] or [float("nan")]
                    if len(firsts) < n:
                        print(f"  {n - len(firsts)} of {n} visitors got no reply", flush=True)
                    rss = tree_rss(proc)
                    results.append((n, statistics.median(firsts), percentile(firsts, 0.95), (rss - base) / len(pages)))
                    print(f"  {n} at once: first text p50 {results[-1][1]:.2f} s, p95 {results[-1][2]:.2f} s; "
                          f"server {rss / MiB:.0f} MB, {results[-1][3] / MiB:.1f} MB per open visitor", flush=True)
                browser.close()
        finally:
            server.stop()
    one = results[0][1]
    print("\nvisitors | first text p50 | p95    | p50 / first round's | server MB per open visitor")
    for n, p50, p95, per in results:
        print(f"{n:8d} | {p50:12.2f} s | {p95:5.2f} s | {p50 / one:19.2f}x | {per / MiB:8.1f}")


if __name__ == "__main__":
    main()
