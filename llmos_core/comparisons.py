"""Saved side-by-side comparisons: one prompt, the answers of two or three models, in SQLite.

A comparison is created when its answers start and written once more when they end (complete, stopped
or failed); it can be listed, reopened and deleted like a conversation. It is never extended afterwards,
so it needs no claim or conflict check.
"""
from __future__ import annotations

import json
import time

from .conversations import title_from
from .errors import InvalidInput
from .store import Store


class ComparisonNotFound(InvalidInput):
    hint = "it may have been deleted in another tab; pick another comparison or start a new one"


class Comparisons:
    def __init__(self, store: Store):
        self.store = store

    def create(self, prompt: str, models: list[str], settings: dict | None = None, system: str = "") -> int:
        """A new comparison, its answers still empty (`finish` writes them): it exists from the first token,
        so a page that is reloaded mid-answer finds it."""
        answers = [{"model": m, "text": "", "stats": {}, "error": ""} for m in models]
        cursor = self.store.execute(
            "INSERT INTO comparisons (title, prompt, system, settings, answers, created) VALUES (?, ?, ?, ?, ?, ?)",
            (title_from(prompt), prompt, system, json.dumps(settings or {}), json.dumps(answers), time.time()))
        return int(cursor.lastrowid)

    def finish(self, comparison_id: int, answers: list[dict]) -> None:
        """answers: [{model, text, stats, error}] in the order the models were picked."""
        cursor = self.store.execute("UPDATE comparisons SET answers = ? WHERE id = ?",
                                    (json.dumps(answers), comparison_id))
        if cursor.rowcount == 0:
            raise ComparisonNotFound(f"comparison {comparison_id} does not exist")

    def list(self, limit: int = 200) -> list[dict]:
        """Newest first: id, title, created and the models compared."""
        rows = self.store.query("SELECT id, title, created, answers FROM comparisons ORDER BY created DESC, id DESC "
                                "LIMIT ?", (limit,))
        for row in rows:
            row["models"] = [a["model"] for a in json.loads(row.pop("answers"))]
        return rows

    def get(self, comparison_id: int) -> dict:
        rows = self.store.query("SELECT * FROM comparisons WHERE id = ?", (comparison_id,))
        if not rows:
            raise ComparisonNotFound(f"comparison {comparison_id} does not exist")
        row = rows[0]
        row["settings"], row["answers"] = json.loads(row["settings"]), json.loads(row["answers"])
        return row

    def delete(self, comparison_id: int) -> None:
        self.store.execute("DELETE FROM comparisons WHERE id = ?", (comparison_id,))

    def export_json(self, comparison_id: int) -> str:
        return json.dumps(self.get(comparison_id), indent=2, ensure_ascii=False)
