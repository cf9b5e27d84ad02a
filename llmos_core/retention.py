"""Keeping the data folder from growing forever: old events, old job usage samples, and uploaded
documents that no job refers to any more.

The primary engine runs `prune` about once an hour, from the monitor's thread (engine.py). Ages come
from the settings (LLMOS_KEEP_EVENTS_DAYS, LLMOS_KEEP_USAGE_DAYS, LLMOS_KEEP_UPLOADS_DAYS); the row caps
bound a burst (a job restarting in a loop logs an event each time) whatever the age.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from .paths import remove_tree
from .settings import Settings
from .store import Store

DAY = 86400.0
MAX_EVENTS = 100_000
MAX_USAGE_ROWS = 500_000   # about 11 days of one job sampled every 2 s


def prune(store: Store, settings: Settings, now: float | None = None) -> dict[str, int]:
    """Delete what is past its keeping time; returns how many rows and files went, by kind."""
    now = time.time() if now is None else now
    with store.transaction() as conn:
        events = conn.execute("DELETE FROM events WHERE ts < ?", (now - settings.keep_events_days * DAY,)).rowcount
        events += _cap(conn, "events", MAX_EVENTS)
        usage = conn.execute("DELETE FROM job_usage WHERE ts < ?", (now - settings.keep_usage_days * DAY,)).rowcount
        usage += _cap(conn, "job_usage", MAX_USAGE_ROWS)
    return {"events": events, "job_usage": usage, "uploads": prune_uploads(store, settings, now)}


def _cap(conn, table: str, keep: int) -> int:
    """Keep the newest `keep` rows of `table` (by rowid, which grows with time here)."""
    return conn.execute(f"DELETE FROM {table} WHERE rowid <= "
                        f"(SELECT rowid FROM {table} ORDER BY rowid DESC LIMIT 1 OFFSET ?)", (keep,)).rowcount


def prune_uploads(store: Store, settings: Settings, now: float | None = None) -> int:
    """Uploaded documents older than the keeping time that no job's parameters name (a queued or finished
    translate job still needs its input to run, resume or re-run)."""
    now = time.time() if now is None else now
    folder = settings.uploads_dir
    if not folder.is_dir():
        return 0
    referenced = {str(Path(value).resolve()) for row in store.query("SELECT params FROM jobs")
                  for value in json.loads(row["params"]).values() if isinstance(value, str) and "/" in value}
    removed = 0
    for path in folder.iterdir():
        try:
            old = path.lstat().st_mtime < now - settings.keep_uploads_days * DAY
        except FileNotFoundError:   # removed meanwhile
            continue
        if old and str(path.resolve()) not in referenced:
            remove_tree(path, folder)
            removed += 1
    return removed
