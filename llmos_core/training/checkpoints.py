"""Training checkpoints: the callback marks each one whose save finished (CHECKPOINT_MARK); a folder
without the mark is half-written (disk full, kill) and is never resumed from.
"""
from __future__ import annotations

from pathlib import Path

from ..paths import remove_tree

CHECKPOINT_MARK = ".llmos-complete"


def complete_checkpoints(folder: Path) -> list[Path]:
    """Checkpoints whose save finished (marked by the callback), oldest first."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob("checkpoint-*") if (p / CHECKPOINT_MARK).exists()
             and p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def remove_incomplete_checkpoints(folder: Path) -> list[str]:
    """A save cut short (disk full, kill) leaves a folder without the mark: delete it, never resume from it."""
    removed = []
    if folder.is_dir():
        for path in folder.glob("checkpoint-*"):
            if not (path / CHECKPOINT_MARK).exists():
                remove_tree(path, folder)
                removed.append(path.name)
    return removed
