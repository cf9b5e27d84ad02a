"""Document parsing: time per MB for each format at growing sizes (the target: linear, the 16 MB parse
within 20x of the 1 MB one), the cost of parsing in a child process, and the app's latency while the
Translate page parses a heavy upload (the target: under 1 s). Prints figures and ratios; writes nothing.

    python bench/parse.py                    # every format at 1, 4, 16 MB (PDF at 0.25, 1, 4: pypdf is slow)
    python bench/parse.py --sizes 1,4 --no-server
"""
from __future__ import annotations

import argparse
import io
import random
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import translation_samples as samples  # noqa: E402
from llmos_core.translation import documents  # noqa: E402
from llmos_core.translation.isolation import parse_in_child  # noqa: E402
from llmos_core.translation.parsed import ParseLimits  # noqa: E402

MB = 1024**2
# Big documents are what is measured here, not refused: the limits are lifted.
UNLIMITED = ParseLimits(max_segments=10**8, max_chars=10**10, max_pdf_pages=10**6)
WORDS = ("the report shows that our team shipped two releases this quarter while sales grew in every region "
         "and the outlook for next year is good although costs rose faster than planned").split()


def sentence(rng: random.Random, n: int = 14) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def make_document(fmt: str, size: int) -> bytes:
    """A realistic document of about `size` bytes: each format's usual structure, varied words."""
    rng, parts, total, k = random.Random(size), [], 0, 0
    while total < size:
        k += 1
        if fmt == "txt":
            part = f"{sentence(rng)} {sentence(rng)}\n{sentence(rng)}\n\n- {sentence(rng, 6)}\n\n"
        elif fmt == "md":
            part = (f"## Section {k}\n\n{sentence(rng)} Read the [manual](https://example.com/{k}) and run "
                    f"`tool --x {k}`.\n{sentence(rng)} **{rng.choice(WORDS)}** *{rng.choice(WORDS)}*\n\n"
                    f"- {sentence(rng, 6)}\n1. {sentence(rng, 5)}\n\n| Name | Value |\n|---|---|\n| a{k} | {k} |\n\n"
                    f"```\ncode {k}\n```\n\n")
        elif fmt == "srt":
            part = f"{k}\n00:{k // 3600 % 60:02d}:{k % 60:02d},000 --> 00:{k // 3600 % 60:02d}:{k % 60:02d},900\n" \
                   f"<i>{sentence(rng, 5)}</i>\n{sentence(rng, 6)}\n\n"
        elif fmt == "html":
            part = (f"<h2>Section {k}</h2>\n<p class=\"body\">{sentence(rng)} <b>{rng.choice(WORDS)}</b> see "
                    f"<a href=\"https://example.com/{k}\">the page</a>.<br>{sentence(rng)}</p>\n"
                    f"<ul><li>{sentence(rng, 5)}</li><li>{sentence(rng, 5)} <code>x = {k}</code></li></ul>\n"
                    f"<script>var n{k} = {k};</script>\n")
        else:
            raise ValueError(fmt)
        parts.append(part)
        total += len(part)
    if fmt == "html":
        return ("<!DOCTYPE html><html><head><title>Bench</title></head><body>\n" + "".join(parts)
                + "</body></html>\n").encode()
    return "".join(parts).encode()


def make_docx(size: int) -> bytes:
    """python-docx's own template with a body of paragraphs (some bold runs) written as XML: about `size`
    bytes once zipped (varied words keep the compression near what real documents get)."""
    rng = random.Random(size)
    template = zipfile.ZipFile(io.BytesIO(samples.make_docx()))
    xml = template.read("word/document.xml").decode()
    head, body_end = xml.split("<w:body>")[0] + "<w:body>", "<w:sectPr" + xml.split("<w:sectPr", 1)[1]
    paragraphs, total = [], 0
    while total < size * 7:   # ~7x: deflate on this vocabulary
        p = (f'<w:p><w:r><w:t xml:space="preserve">{sentence(rng)} </w:t></w:r><w:r><w:rPr><w:b/></w:rPr>'
             f'<w:t>{rng.choice(WORDS)}</w:t></w:r><w:r><w:t xml:space="preserve"> {sentence(rng)}</w:t></w:r></w:p>')
        paragraphs.append(p)
        total += len(p)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for item in template.infolist():
            data = template.read(item.filename)
            if item.filename == "word/document.xml":
                data = (head + "".join(paragraphs) + body_end).encode()
            archive.writestr(item.filename, data)
    return out.getvalue()


def make_pdf(size: int) -> bytes:
    rng = random.Random(size)
    page = [sentence(rng, 9) for _ in range(45)]
    one = len(samples.make_pdf([page]))
    return samples.make_pdf([[sentence(rng, 9) for _ in range(45)] for _ in range(max(1, size // one))])


def build(fmt: str, size: int) -> bytes:
    return make_docx(size) if fmt == "docx" else make_pdf(size) if fmt == "pdf" else make_document(fmt, size)


def bench_formats(sizes: list[float], pdf_sizes: list[float]) -> None:
    print("format   size MB   seconds    s/MB   segments   vs smallest (linear = size ratio)")
    for fmt in ("txt", "md", "srt", "html", "docx", "pdf"):
        first = None
        for mb in (pdf_sizes if fmt == "pdf" else sizes):
            data = build(fmt, int(mb * MB))
            started = time.perf_counter()
            doc = documents.parse(data, f"bench.{fmt}", max_bytes=10**10, limits=UNLIMITED)
            seconds = time.perf_counter() - started
            real_mb = len(data) / MB
            first = first or (seconds, real_mb)
            print(f"{fmt:6s} {real_mb:9.2f} {seconds:9.2f} {seconds / real_mb:7.2f} {len(doc.segments):10,d}   "
                  f"time x{seconds / first[0]:.1f} for size x{real_mb / first[1]:.1f}", flush=True)


def bench_child_overhead() -> None:
    data = samples.MARKDOWN.encode()
    here, there = [], []
    for _ in range(5):
        started = time.perf_counter()
        documents.parse(data, "a.md")
        here.append(time.perf_counter() - started)
        started = time.perf_counter()
        parse_in_child(data, "a.md", 10**9)
        there.append(time.perf_counter() - started)
    print(f"\nchild process overhead (small .md, median of 5): in-process {statistics.median(here) * 1000:.1f} ms, "
          f"in a child {statistics.median(there) * 1000:.0f} ms", flush=True)


def bench_server_latency(upload_mb: int) -> None:
    """A real `streamlit run app.py`; Chromium uploads a heavy file to the Translate page while a thread
    times /_stcore/health every 50 ms (the same Tornado loop that serves every page and session)."""
    from playwright.sync_api import sync_playwright

    from browser_helpers import wait_idle
    from e2e.conftest import CHROMIUM, CHROMIUM_ARGS, AppServer

    with tempfile.TemporaryDirectory() as tmp:
        heavy = Path(tmp) / "heavy.md"
        # Markdown of the shapes that were quadratic, big enough to keep a parser busy for seconds.
        line = b"# " + b" " * 8000 + b"x\n" + b"a " + b"[" * 8000 + b"\n" + b"<a" * 4000 + b"\n\n"
        heavy.write_bytes(line * (upload_mb * MB // len(line)))
        server = AppServer(Path(tmp) / "home", {"LLMOS_MAX_UPLOAD_MB": str(upload_mb + 10)})
        latencies: list[tuple[float, float]] = []
        stop = threading.Event()

        def probe() -> None:
            while not stop.is_set():
                started = time.perf_counter()
                with urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=60) as reply:
                    reply.read()
                latencies.append((started, time.perf_counter() - started))
                time.sleep(0.05)

        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                page = browser.new_page()
                page.goto(f"{server.url}/translate")
                page.wait_for_selector("text=Translate", timeout=60_000)
                wait_idle(page)
                thread = threading.Thread(target=probe, daemon=True)
                thread.start()
                time.sleep(10.0)   # the idle baseline: on a loaded machine its worst case is not zero either
                before = [s for _, s in latencies]
                uploaded = time.perf_counter()
                page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(heavy))
                page.wait_for_selector("text=segments", timeout=600_000)
                wait_idle(page, timeout=600_000)
                shown = time.perf_counter()
                stop.set()
                thread.join()
                browser.close()
        finally:
            server.stop()
        during = [s for t, s in latencies if uploaded <= t <= shown]
        worst_at = max((s, t - uploaded) for t, s in latencies if uploaded <= t <= shown)[1]
        print(f"\napp latency while the Translate page parsed a {heavy.stat().st_size / MB:.0f} MB hostile .md "
              f"({shown - uploaded:.1f} s from upload to segments shown):\n"
              f"  /_stcore/health idle for 10 s before: median {statistics.median(before) * 1000:.0f} ms, max "
              f"{max(before) * 1000:.0f} ms; during: median "
              f"{statistics.median(during) * 1000:.0f} ms, max {max(during) * 1000:.0f} ms ({worst_at:.1f} s after the "
              f"upload began) over {len(during)} requests (target: under 1000 ms)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,4,16", help="MB, for every format but PDF")
    parser.add_argument("--pdf-sizes", default="0.25,1,4", help="MB for PDF (pypdf takes ~20 s a MB here)")
    parser.add_argument("--upload-mb", type=int, default=10, help="size of the heavy upload in the server test")
    parser.add_argument("--no-server", action="store_true", help="skip the app latency (needs Chromium)")
    parser.add_argument("--server-only", action="store_true", help="only the app latency")
    args = parser.parse_args()
    if not args.server_only:
        bench_formats([float(s) for s in args.sizes.split(",")], [float(s) for s in args.pdf_sizes.split(",")])
        bench_child_overhead()
    if not args.no_server:
        bench_server_latency(args.upload_mb)


if __name__ == "__main__":
    main()
