"""A JSON file of text pairs kept per language pair ({"en>de": {key: value}}): what a person teaches the
translator, read by later translations. The translation memory (memory.py) and the saved glossary
(glossary.py) are two of them.

Safe with several writers, threads or processes (the page and a job, two jobs): every read-modify-write holds
an exclusive lock on a file beside it (flock, so a process that dies lets go), and the file is written whole
to a temporary file of its own (unique name, fsync), then renamed over the old one: a reader sees the old
file or the new, never half of one. A file that cannot be read (corrupt, not JSON) is never silently
replaced by an empty one: it is moved aside, as <name>.corrupt-<time>, and the operation that found it fails
with a message naming that copy; the next one starts from an empty file.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from ..errors import InvalidInput

T = TypeVar("T")
log = logging.getLogger(__name__)

_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


class PairStore:
    what = "the file"       # for messages: "the translation memory", "the glossary"
    max_entries = 100_000   # all language pairs together

    def __init__(self, path: Path):
        self.path = Path(path)
        with _locks_guard:
            self._lock = _locks.setdefault(self.path.resolve(), threading.Lock())

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """This process's threads (a flock is per open file, not per thread), then the other processes."""
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path.parent / f".{self.path.name}.lock", "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)

    def _read(self) -> dict[str, dict[str, str]]:
        """The whole file; under the lock. A corrupt file is moved aside and reported."""
        try:
            data = json.loads(self.path.read_bytes().decode("utf-8"))
            if not isinstance(data, dict):
                raise ValueError(f"a JSON {type(data).__name__}, not an object")
            return data
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
            try:
                os.replace(self.path, aside)
            except OSError as move_error:
                raise InvalidInput(f"{self.what} ({self.path.name}) cannot be read: {exc}",
                                   f"move the file away ({move_error.strerror}); a new one starts empty") from exc
            log.warning("%s cannot be read (%s); it was moved aside to %s", self.what, exc, aside)
            raise InvalidInput(f"{self.what} ({self.path.name}) cannot be read ({exc}); it was kept as "
                               f"{aside.name} and a new, empty one starts now",
                               f"repair {aside.name} (in {self.path.parent.name}/) and move it back, or "
                               "delete it; then try again") from exc

    def _write(self, data: dict) -> None:
        """Atomically: a temporary file of this writer's own in the same folder, synced, renamed over."""
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):   # ours alone to see: we hold the lock
            stale.unlink(missing_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(json.dumps(data, ensure_ascii=False, indent=0).encode("utf-8"))
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        folder = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)   # the rename itself survives a power cut
        finally:
            os.close(folder)

    def entries(self, source: str, target: str) -> dict[str, str]:
        """key -> value for one language pair (text only: a hand-edited file may hold anything)."""
        with self._locked():
            pair = self._read().get(f"{source}>{target}", {})
        if not isinstance(pair, dict):
            return {}
        return {k: v for k, v in pair.items() if isinstance(k, str) and isinstance(v, str)}

    def update(self, source: str, target: str, change: Callable[[dict[str, str]], T]) -> T:
        """Apply `change` to one language pair's entries (it edits the dict in place) and save; returns
        what `change` returns. Nothing is written when the result would be over max_entries."""
        with self._locked():
            data = self._read()
            key = f"{source}>{target}"
            pair = data.get(key)
            pair = data[key] = pair if isinstance(pair, dict) else {}
            outcome = change(pair)
            if not pair:
                data.pop(key)
            if sum(len(p) for p in data.values() if isinstance(p, dict)) > self.max_entries:
                raise InvalidInput(f"{self.what} would hold over {self.max_entries:,} entries",
                                   f"remove old entries from {self.path.name}")
            self._write(data)
        return outcome
