"""Advisory file locks that say "one of these per data folder" (the primary engine, the job scheduler).

flock() locks belong to an open file and vanish when the process dies, however it dies: a lock is
never left stale by a crash. The holder writes its pid into the file so others can name it.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO


def take_lock(path: Path) -> IO | None:
    """The open, locked file (keep it open to hold the lock), or None when another holds it."""
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def is_held(path: Path) -> bool:
    """Someone holds the lock now (this process included, through another open file)."""
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        handle.close()   # closing drops the lock if we took it
    return False
