"""The live chart component: the Monitor's charts drawn in the browser by uPlot, fed increments.

A new frame (and a change of window, a new job or GPU) gets the whole window, downsampled, until the
frame answers that it holds it. After that a short window (5 min) grows from the engine's live feed
(llmos_core/monitor_feed.py): the frame fetches that small document each second by itself, so no script
reruns for it; the frame asks for the whole window again (a rerun of the chart's fragment) when it sees
a line it has no place for or missed samples. The feed's URL holds a token of this session and its login,
valid two minutes (llmos_core/weblogin): when it runs out the frame asks for a new one, a rerun of the
fragment that sends only the samples since the last. Longer windows move by the fragment's reruns every few
seconds, each sending only the samples since the last one. The server builds no figure. The component's files (uPlot 1.6.32, MIT, vendored: no CDN) are in
app_pages/_live_chart/.
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path

import streamlit as st
import streamlit.components.v1 as components

from llmos_core import monitor_series
from llmos_core.alerts import recent_alerts
from llmos_core.monitor import Sampler
from llmos_core.monitor_feed import MonitorFeed
from llmos_core.weblogin import FEED_PATH, logins

_component = components.declare_component("live_chart", path=str(Path(__file__).with_suffix("")))
FEED_MAX_WINDOW_S = 600      # windows drawn from the live feed, second by second; longer ones move by reruns


def draw(sampler: Sampler, window_s: float, key: str, only: tuple[str, ...] | None = None,
         chart_height: int = 240, feed: MonitorFeed | None = None) -> dict:
    """Send the chart what it lacks; returns the payload sent (for the tests and the benchmark).
    `only` keeps the charts of those ids ("cpu", "memory", "gpu0", "llmos"). With a `feed`, a short window
    then grows from the feed file, fetched by the browser: the page need not rerun to move it."""
    sent = st.session_state.setdefault(f"{key}_sent", {})
    # The frame says which window it holds once it has drawn it; until then it gets the whole window again
    # (a frame still loading is handed the latest payload only, so an increment would leave it empty; a
    # frame that lost its data says so too). A new page or a new frame starts with no answer at all.
    have = (st.session_state.get(key) or {}).get("have")
    same_window = sent.get("window_s") == window_s
    now = time.time()
    fresh = None
    if same_window and have is not None and have == sent.get("epoch"):
        fresh = [s for s in sampler.history(now - sent["last_ts"] + sampler.interval_s) if s["ts"] > sent["last_ts"]]
        if not monitor_series.fits(fresh, sent["charts"], only):
            fresh = None   # a new job or GPU: a new layout, so the whole window again
    if fresh is None:
        samples = sampler.history(window_s)
        payload = monitor_series.window_payload(samples, _markers(sampler, window_s, now), window_s, "", only=only)
        if not same_window or payload["charts"] != sent.get("charts") or not sent.get("epoch"):
            sent["epoch"] = uuid.uuid4().hex[:12]   # a new window: the frame must say it has this one
        payload["epoch"] = sent["epoch"]
        sent.update(window_s=window_s, charts=payload["charts"])
    else:
        samples = fresh
        bucket_s = window_s / (monitor_series.MAX_POINTS / 2)
        span = samples[-1]["ts"] - samples[0]["ts"] if samples else 0.0
        payload = monitor_series.increment_payload(samples, _markers(sampler, now - sent["markers_at"] + 1, now),
                                                   sent["charts"], sent["epoch"], max(2, int(2 * span / bucket_s) + 2))
    if samples:
        sent["last_ts"] = samples[-1]["ts"]
    sent.setdefault("last_ts", now - window_s)
    sent["markers_at"] = now
    if feed is not None and window_s <= FEED_MAX_WINDOW_S:
        payload.update(feed=feed_url(), only=list(only) if only else None)
    _component(payload=payload, chart_height=chart_height, key=key, default=None)
    return payload


def feed_url() -> str:
    """The live feed's URL for this session's chart: the gate's path and a token of this session and login."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    token = logins().feed_token(ctx.session_id if ctx else "", st.session_state.get("llmos_login", ""))
    base = (st.get_option("server.baseUrlPath") or "").strip("/")
    return f"{'/' + base if base else ''}{FEED_PATH}?t={token}"


def _markers(sampler: Sampler, window_s: float, now: float) -> list[dict]:
    """Events (jobs, models) and alerts of the window, oldest first."""
    return sorted(sampler.markers(window_s) + recent_alerts(sampler.store, now - window_s), key=lambda m: m["ts"])
