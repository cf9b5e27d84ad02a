"""The Monitor page in Chromium: charts that grow in the browser with no page rerun, a week's spike kept,
a busy job named, and an alert that fires when memory passes its threshold."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time

import psutil
import pytest
from browser_helpers import screenshot, wait_idle

# The live chart's state inside its frame (app_pages/_live_chart/live_chart.js).
CHART_STATE = """() => { const s = window.liveChart; return s && s.ts.length ? {points: s.ts.length, last: s.ts[s.ts.length - 1],
  renders: s.renders, resets: s.resets, window: s.windowS, ts: s.ts, cpu: s.values.cpu[0], marked: window.marked || 0} : null; }"""


def chart_frame(page, timeout: float = 90.0):
    """The live chart's frame, once it has drawn."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = next((f for f in page.frames if "live_chart" in f.url), None)
        if frame is not None:
            try:
                if frame.evaluate(CHART_STATE):
                    return frame
            except Exception:   # the frame is still loading
                pass
        page.wait_for_timeout(300)
    raise AssertionError("the live chart never drew")


@pytest.mark.e2e
@pytest.mark.flaky(reruns=2)   # a page that never drew under load once (blank screenshot)
def test_the_chart_grows_by_itself_with_no_page_rerun(app_server, page):
    server = app_server()
    page.goto(f"{server.url}/monitor")
    frame = chart_frame(page)
    first = frame.evaluate(CHART_STATE)
    frame.evaluate("() => { window.marked = 1; }")          # gone if the frame were reloaded
    frame.wait_for_function(f"() => window.liveChart.ts.length >= {first['points'] + 3}", timeout=15_000)
    now = frame.evaluate(CHART_STATE)
    assert now["marked"] == 1 and now["resets"] == first["resets"]    # the same frame, fed increments only
    assert now["renders"] >= first["renders"] + 3 and now["last"] > first["last"]
    assert page.locator('[data-testid="stPlotlyChart"]').count() == 0
    screenshot(page, "monitor_live_chart")


@pytest.mark.e2e
@pytest.mark.flaky(reruns=2)   # a page that never drew under load once (blank screenshot)
def test_a_spike_in_a_week_window_survives_downsampling(app_server, page):
    server = app_server()
    page.goto(f"{server.url}/monitor")
    chart_frame(page)
    # A week of stored minutes at 5 % CPU with one minute at 100 %, three days ago.
    now = time.time()
    start = now - 7 * 86400 + 120
    spike_at = now - 3 * 86400

    def row(ts: float, cpu: float) -> tuple:
        return (60, ts, json.dumps({"ts": ts, "cpu": {"total": cpu, "per_core": None, "load": None},
                                    "mem": {"used": 2**30, "total": 2**34, "percent": 6.0, "swap_used": 0, "swap_total": 0},
                                    "io": {}, "gpus": None, "llmos": {}}))
    rows = [row(start + 60 * i, 5.0) for i in range(int((spike_at - start) // 60))]
    rows += [row(spike_at, 100.0)]
    rows += [row(spike_at + 60 * (i + 1), 5.0) for i in range(int((now - 3700 - spike_at) // 60))]
    with sqlite3.connect(server.home / "llmos.db") as db:
        db.executemany("INSERT OR REPLACE INTO monitor_samples (resolution, ts, data) VALUES (?, ?, ?)", rows)
    page.get_by_text("1 week").click()
    frame = chart_frame(page)
    frame.wait_for_function(f"() => window.liveChart.windowS === {7 * 86400}", timeout=30_000)
    state = frame.evaluate(CHART_STATE)
    assert len(rows) > 9000 and state["points"] <= 2100              # 10,000 stored minutes drawn as ~2,000 points
    near = [v for t, v in zip(state["ts"], state["cpu"]) if abs(t - spike_at) < 3600 and v is not None]
    assert max(near) == 100.0                                         # the one busy minute, at full height
    screenshot(page, "monitor_week_spike")


@pytest.mark.e2e
@pytest.mark.flaky(reruns=2)   # a page that never drew under load once (blank screenshot)
def test_a_busy_job_is_named_and_an_alert_fires_past_the_memory_threshold(app_server, page):
    used = psutil.virtual_memory().percent
    server = app_server(env={"LLMOS_ALERT_MEMORY_PERCENT": f"{used + 3:.1f}"})
    page.goto(f"{server.url}/monitor")
    chart_frame(page)
    wait_idle(page)
    # A CPU-heavy process registered as a running training job, as the scheduler would.
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    # Memory pushed past the threshold: 6 % of the machine's RAM, touched so it is really in use.
    size = int(psutil.virtual_memory().total * 0.06)
    hog = subprocess.Popen([sys.executable, "-c", f"b = bytearray({size}); b[::4096] = b'x' * len(b[::4096]); "
                            "import time; time.sleep(120)"], start_new_session=True)
    try:
        with sqlite3.connect(server.home / "llmos.db") as db:
            db.execute("INSERT INTO jobs (kind, params, state, created, pid) VALUES ('train', ?, 'running', ?, ?)",
                       (json.dumps({"method": "lora", "model": "gemma-270m"}), time.time(), burner.pid))
        page.get_by_text("training job 1 (", exact=False).first.wait_for(timeout=40_000)   # table: every 5 s
        assert "gemma-270m" in page.inner_text("body")
        page.locator('[data-testid="stToast"]').filter(has_text="RAM").first.wait_for(timeout=20_000)
        frame = chart_frame(page)
        frame.wait_for_function("() => window.liveChart.markers.some(m => m.alert)", timeout=15_000)
        with sqlite3.connect(server.home / "llmos.db") as db:
            kinds = [r[0] for r in db.execute("SELECT kind FROM events WHERE kind = 'alert' AND subject = 'memory'")]
        assert kinds == ["alert"]
        screenshot(page, "monitor_alert")
    finally:
        for proc in (burner, hog):
            proc.kill()
            proc.wait()
