"""A JSON file of text pairs kept per language pair ({"en>de": {key: value}}): what a person teaches the
translator, read by later translations. The translation memory (memory.py) and the saved glossary
(glossary.py) are two of them.

The file is written whole to a temporary file and renamed, so a crash never leaves half a file; one lock
per file serializes the app's threads (a read-modify-write is never interleaved).
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Callable, TypeVar

from ..errors import InvalidInput

T = TypeVar("T")

_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


class PairStore:
    what = "the file"       # for messages: "the translation memory", "the glossary"
    max_entries = 100_000   # all language pairs together

    def __init__(self, path: Path):
        self.path = Path(path)
        with _locks_guard:
            self._lock = _locks.setdefault(self.path.resolve(), threading.Lock())

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"{self.what} {self.path} cannot be read: {exc}",
                               "move the file away; a new one starts empty") from exc
        return data if isinstance(data, dict) else {}

    def entries(self, source: str, target: str) -> dict[str, str]:
        """key -> value for one language pair (text only: a hand-edited file may hold anything)."""
        with self._lock:
            pair = self._read().get(f"{source}>{target}", {})
        if not isinstance(pair, dict):
            return {}
        return {k: v for k, v in pair.items() if isinstance(k, str) and isinstance(v, str)}

    def update(self, source: str, target: str, change: Callable[[dict[str, str]], T]) -> T:
        """Apply `change` to one language pair's entries (it edits the dict in place) and save; returns
        what `change` returns. Nothing is written when the result would be over max_entries."""
        with self._lock:
            data = self._read()
            key = f"{source}>{target}"
            pair = data.get(key)
            pair = data[key] = pair if isinstance(pair, dict) else {}
            outcome = change(pair)
            if not pair:
                data.pop(key)
            if sum(len(p) for p in data.values() if isinstance(p, dict)) > self.max_entries:
                raise InvalidInput(f"{self.what} would hold over {self.max_entries:,} entries",
                                   "remove old entries from " + str(self.path))
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text(json.dumps(data, ensure_ascii=False, indent=0), encoding="utf-8")
            os.replace(temporary, self.path)
        return outcome
