"""Preference files as training data: JSONL or CSV with `prompt`, `chosen`, `rejected` (pairs) or `prompt`,
`completion`, `label` (a reply marked good or bad), read by llmos_core.feedback (bounded, errors name the line)
into a Dataset. Apart from preference.py (the trainers), so data.py can read them without importing back."""
from __future__ import annotations

import json
from pathlib import Path

from .dataset import LABELLED, PREFERENCE, Dataset

PAIR_FIELDS, LABEL_FIELDS = {"chosen", "rejected"}, {"completion", "label"}


def load_preference(path: Path, text: str) -> Dataset | None:
    """A preference file as a Dataset (PREFERENCE or LABELLED shape), or None when the file is not one."""
    from ..feedback import read_labelled, read_pairs

    keys = _first_keys(path, text)
    if PAIR_FIELDS <= keys:
        pairs = read_pairs(path)
        return Dataset(path, PREFERENCE, [
            {"messages": p.prompt + [{"role": "assistant", "content": p.chosen}], "rejected": p.rejected}
            for p in pairs], sorted(keys))
    if LABEL_FIELDS <= keys:
        examples = read_labelled(path)
        return Dataset(path, LABELLED, [
            {"messages": e.prompt + [{"role": "assistant", "content": e.completion}], "label": e.label}
            for e in examples], sorted(keys))
    return None


def _first_keys(path: Path, text: str) -> set[str]:
    """The CSV header, or the keys of the first JSON object of a JSONL."""
    if path.suffix.lower() == ".csv":
        import csv
        import io

        return {h.strip() for h in next(csv.reader(io.StringIO(text[:65536])), []) if h}
    for line in text.splitlines()[:20]:
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            return set()
        if isinstance(record, dict):
            return set(record)
    return set()
