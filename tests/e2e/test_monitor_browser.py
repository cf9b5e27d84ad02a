"""The Monitor page in Chromium: the CPU chart redraws by itself, and a CPU-heavy job shows up by name."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time

import pytest
from browser_helpers import screenshot

# The last point of the CPU chart's "total" line: [x, y], or null while the chart is not drawn yet.
LAST_CPU_POINT = """() => {
  const el = [...document.querySelectorAll('.js-plotly-plot')]
      .find(e => e.layout && e.layout.title && e.layout.title.text.replace(/<[^>]+>/g, '') === 'CPU');
  if (!el) return null;
  const t = el.data.find(d => d.name === 'total');
  return t && t.x.length ? [String(t.x[t.x.length - 1]), t.y[t.y.length - 1]] : null;
}"""


@pytest.mark.e2e
def test_chart_updates_by_itself_and_names_a_busy_job(app_server, page, tmp_path):
    server = app_server()
    page.goto(f"{server.url}/monitor")
    page.wait_for_function(LAST_CPU_POINT, timeout=90_000)
    first = page.evaluate(LAST_CPU_POINT)
    started = time.monotonic()
    page.wait_for_function(f"() => {{ const p = ({LAST_CPU_POINT})(); return p && p[0] !== {json.dumps(first[0])}; }}",
                           timeout=5_000)   # a new sample drawn without any click: the fragment's timer
    assert time.monotonic() - started < 5

    # A CPU-heavy process registered as a running training job, as the scheduler would.
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    try:
        with sqlite3.connect(server.home / "llmos.db") as db:
            db.execute("INSERT INTO jobs (kind, params, state, created, pid) VALUES ('train', ?, 'running', ?, ?)",
                       (json.dumps({"method": "lora", "model": "gemma-270m"}), time.time(), burner.pid))
        shown = time.monotonic()
        page.get_by_text("training job 1 (", exact=False).first.wait_for(timeout=10_000)
        named_after = time.monotonic() - shown
        screenshot(page, "monitor_busy_job")
        text = page.inner_text("body")
        assert "gemma-270m" in text and "CPU" in text
        print(f"job named on the page after {named_after:.1f} s")
    finally:
        burner.kill()
        burner.wait()
