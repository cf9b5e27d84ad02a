"""The Monitor's live feed: the last few samples as one small JSON document, remade after each sample.

Watching must not load the machine. A browser on the Monitor page fetches this document once a second
(a plain GET answered by the web app's gate, llmos_core/weblogin/gate.py, from memory) instead of asking
the Streamlit server to rerun a script for it, so a viewer costs the server one small request a second.
The document is made once per sample for every viewer together, by the sampler's own thread (a Sampler
listener).

Who may read it: a request carrying a token the page gave its own chart (weblogin.WebLogins.feed_token),
short-lived, bound to one browser session and to its login; the gate checks it, and the login's cookie.
Nothing is written to disk and nothing is served as a static file.
"""
from __future__ import annotations

import json
import threading
import time

from . import monitor_series
from .alerts import recent_alerts
from .monitor import Sampler

KEEP = 5             # samples in the document (5 s at 1 Hz): a viewer that missed more asks for the window again
MARKERS_S = 60.0     # events and alerts of the last minute ride along (the browser drops repeats)
_open: list["MonitorFeed"] = []    # feeds not closed, newest last: the gate serves the newest
_open_lock = threading.Lock()


class MonitorFeed:
    """Remakes `data` (the JSON bytes) after each sample of `sampler`."""

    def __init__(self, sampler: Sampler, keep: int = KEEP):
        self.sampler, self.keep = sampler, keep
        self.data = b"{}"
        self.writes = 0
        self.write()                      # a first document at once: a viewer may ask before the next sample
        sampler.listeners.append(self.on_sample)
        with _open_lock:
            _open.append(self)

    def on_sample(self, snapshot: dict) -> None:
        self.write()

    def write(self) -> None:
        """The last `keep` samples, with each line's values under its chart and label. A count, not
        seconds: on a loaded machine samples can come seconds apart, and a viewer that has the previous one
        must still find it. One assignment: a reader gets the old document or the new one, never half."""
        samples = self.sampler.recent(self.keep)
        now = samples[-1]["ts"] if samples else time.time()   # the sampler's clock (the tests fake it)
        markers = sorted(self.sampler.markers(MARKERS_S) + recent_alerts(self.sampler.store, now - MARKERS_S),
                         key=lambda m: m["ts"])
        self.data = json.dumps(monitor_series.feed_payload(samples, markers), separators=(",", ":")).encode()
        self.writes += 1

    def close(self) -> None:
        if self.on_sample in self.sampler.listeners:
            self.sampler.listeners.remove(self.on_sample)
        with _open_lock:
            if self in _open:
                _open.remove(self)


def current_data() -> bytes | None:
    """The newest open feed's document, for the gate to serve; None when no feed is open."""
    with _open_lock:
        return _open[-1].data if _open else None
