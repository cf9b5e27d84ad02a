"""The translation memory: segments a person corrected in the side-by-side editor, reused as they are
(exact match of the whole segment, per language pair) before any model sees a later document.

A JSON file under the data folder (<home>/translate/memory.json), kept by pair_store.PairStore.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import InvalidInput
from .pair_store import PairStore

MAX_ENTRIES = 100_000       # a memory is made by hand: more than this is not one
MAX_SEGMENT_CHARS = 20_000


class TranslationMemory(PairStore):
    what = "the translation memory"
    max_entries = MAX_ENTRIES

    @classmethod
    def for_home(cls, home: Path) -> "TranslationMemory":
        return cls(Path(home) / "translate" / "memory.json")

    def add(self, source: str, target: str, pairs: dict[str, str]) -> int:
        """Store corrections (source segment -> translation); returns how many were new or changed."""
        clean = {s: t for s, t in pairs.items() if s.strip() and t.strip()}
        if any(len(s) > MAX_SEGMENT_CHARS or len(t) > MAX_SEGMENT_CHARS for s, t in clean.items()):
            raise InvalidInput(f"a segment over {MAX_SEGMENT_CHARS:,} characters cannot go into the memory")

        def store(pair: dict[str, str]) -> int:
            changed = sum(pair.get(s) != t for s, t in clean.items())
            pair.update(clean)
            return changed

        return self.update(source, target, store)
