"""The Monitor's live feed: the last few seconds of samples as one small JSON file, rewritten after each sample.

Watching must not load the machine. A browser on the Monitor page fetches this file once a second (a
plain file read by the web server) instead of asking the Streamlit server to rerun a script for it, so
a viewer costs the server one small static request a second. The file is written once per sample for
every viewer together, by the sampler's own thread (a Sampler listener).

The web server serves the folder without asking for the login, so the file's name holds a random token
that only a logged-in page is given (app_pages/_live_chart.py); the folder is private to this process
(a fresh temporary directory, mode 0700) and removed when the feed closes or the process exits. A process
killed with -9 cannot remove its own: the folder's name holds its pid, and the next feed removes folders
whose process is gone.
"""
from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path

from . import monitor_series
from .alerts import recent_alerts
from .monitor import Sampler

KEEP = 5             # samples in the file (5 s at 1 Hz): a viewer that missed more asks for the window again
MARKERS_S = 60.0     # events and alerts of the last minute ride along (the browser drops repeats)
PREFIX = "llmos-feed-"   # then the pid of the process that made the folder, then mkdtemp's random part


class MonitorFeed:
    """Writes `path` after each sample of `sampler`; `name` is the file's unguessable name."""

    def __init__(self, sampler: Sampler, folder: Path | None = None, keep: int = KEEP):
        self.sampler, self.keep = sampler, keep
        if folder is None:
            remove_orphaned_feeds()
            folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
        self.folder = Path(folder)
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        atexit.register(shutil.rmtree, self.folder, True)   # a server stopped without closing its engine
        self.name = f"feed-{secrets.token_urlsafe(18)}.json"
        self.path = self.folder / self.name
        self.writes = 0
        self.write()                      # a first file at once: a viewer may ask before the next sample
        sampler.listeners.append(self.on_sample)

    def on_sample(self, snapshot: dict) -> None:
        self.write()

    def write(self) -> None:
        """The last `keep` samples, with each line's values under its chart and label, written atomically.
        A count, not seconds: on a loaded machine samples can come seconds apart, and a viewer that has
        the previous one must still find it in the file."""
        samples = self.sampler.recent(self.keep)
        now = samples[-1]["ts"] if samples else time.time()   # the sampler's clock (the tests fake it)
        markers = sorted(self.sampler.markers(MARKERS_S) + recent_alerts(self.sampler.store, now - MARKERS_S),
                         key=lambda m: m["ts"])
        data = json.dumps(monitor_series.feed_payload(samples, markers), separators=(",", ":"))
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(data, encoding="utf-8")
        os.replace(tmp, self.path)        # a reader never sees half a file
        self.writes += 1

    def close(self) -> None:
        if self.on_sample in self.sampler.listeners:
            self.sampler.listeners.remove(self.on_sample)
        shutil.rmtree(self.folder, ignore_errors=True)


def remove_orphaned_feeds(temp_root: Path | None = None) -> int:
    """Remove feed folders left by processes that no longer run (a server killed with -9). Only folders
    of this user whose name carries a pid that is gone; returns how many."""
    import psutil

    root = Path(temp_root or tempfile.gettempdir())
    removed = 0
    for folder in root.glob(f"{PREFIX}*-*"):
        pid = folder.name[len(PREFIX):].split("-", 1)[0]
        try:
            if not pid.isdigit() or folder.is_symlink() or folder.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        if not psutil.pid_exists(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed
