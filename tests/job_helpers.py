"""Helpers for tests that run real job workers: wait for a condition, and kill what a test left running."""
from __future__ import annotations

import signal
import time

from llmos_core.jobs import resources


def wait_for(condition, timeout: float = 30.0, what: str = "condition"):
    """Poll `condition` until it returns something true; return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def kill_jobs(scheduler) -> None:
    """SIGKILL the process group of every job the store knows (tests must leave no worker behind)."""
    for job in scheduler.list():
        if job["pid"]:
            members = resources.group_members(job["pid"])
            resources.signal_all(members, signal.SIGKILL)
            resources.wait_gone(members, 5)
