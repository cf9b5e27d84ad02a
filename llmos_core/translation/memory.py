"""The translation memory: segments a person corrected in the side-by-side editor, reused as they are
(exact match of the whole segment, per language pair) before any model sees a later document.

A JSON file under the data folder (<home>/translate/memory.json), written whole to a temporary file and
renamed, so a crash never leaves half a file; one lock per file for the threads of the app.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from ..errors import InvalidInput

MAX_ENTRIES = 100_000       # a memory is made by hand: more than this is not one
MAX_SEGMENT_CHARS = 20_000

_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


class TranslationMemory:
    def __init__(self, path: Path):
        self.path = Path(path)
        with _locks_guard:
            self._lock = _locks.setdefault(self.path.resolve(), threading.Lock())

    @classmethod
    def for_home(cls, home: Path) -> "TranslationMemory":
        return cls(Path(home) / "translate" / "memory.json")

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"the translation memory {self.path} cannot be read: {exc}",
                               "move the file away; a new memory starts empty") from exc
        return data if isinstance(data, dict) else {}

    def entries(self, source: str, target: str) -> dict[str, str]:
        """Source segment -> corrected translation, for one language pair."""
        with self._lock:
            pair = self._read().get(f"{source}>{target}", {})
        return {k: v for k, v in pair.items() if isinstance(k, str) and isinstance(v, str)}

    def add(self, source: str, target: str, pairs: dict[str, str]) -> int:
        """Store corrections (source segment -> translation); returns how many were new or changed."""
        clean = {s: t for s, t in pairs.items() if s.strip() and t.strip()}
        if any(len(s) > MAX_SEGMENT_CHARS or len(t) > MAX_SEGMENT_CHARS for s, t in clean.items()):
            raise InvalidInput(f"a segment over {MAX_SEGMENT_CHARS:,} characters cannot go into the memory")
        with self._lock:
            data = self._read()
            pair = data.setdefault(f"{source}>{target}", {})
            changed = sum(pair.get(s) != t for s, t in clean.items())
            pair.update(clean)
            if sum(len(p) for p in data.values()) > MAX_ENTRIES:
                raise InvalidInput(f"the translation memory would hold over {MAX_ENTRIES:,} segments",
                                   "remove old entries from " + str(self.path))
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text(json.dumps(data, ensure_ascii=False, indent=0), encoding="utf-8")
            os.replace(temporary, self.path)
        return changed
