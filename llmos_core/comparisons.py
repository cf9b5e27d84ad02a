"""Saved side-by-side comparisons: one prompt, the answers of two or three models, in SQLite.

A comparison is created when its answers start and written once more when they end (complete, stopped
or failed); it can be listed, reopened and deleted like a conversation. It is never extended afterwards,
so it needs no claim or conflict check.
"""
from __future__ import annotations

import json
import time

from .accounts import User, owner_filter
from .conversations import title_from
from .errors import InvalidInput
from .store import Store


class ComparisonNotFound(InvalidInput):
    hint = "it may have been deleted in another tab; pick another comparison or start a new one"


class Comparisons:
    def __init__(self, store: Store):
        self.store = store

    def create(self, actor: User, prompt: str, models: list[str], settings: dict | None = None,
               system: str = "") -> int:
        """A new comparison, its answers still empty (`finish` writes them): it exists from the first token,
        so a page that is reloaded mid-answer finds it."""
        answers = [{"model": m, "text": "", "stats": {}, "error": ""} for m in models]
        cursor = self.store.execute(
            "INSERT INTO comparisons (title, prompt, system, settings, answers, created, owner) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (title_from(prompt), prompt, system, json.dumps(settings or {}), json.dumps(answers), time.time(),
             actor.id))
        return int(cursor.lastrowid)

    def finish(self, comparison_id: int, answers: list[dict]) -> None:
        """answers: [{model, text, stats, error}] in the order the models were picked."""
        cursor = self.store.execute("UPDATE comparisons SET answers = ? WHERE id = ?",
                                    (json.dumps(answers), comparison_id))
        if cursor.rowcount == 0:
            raise ComparisonNotFound(f"comparison {comparison_id} does not exist")

    def list(self, actor: User, limit: int = 200) -> list[dict]:
        """The actor's comparisons (an admin's: all), newest first: id, title, created and the models compared."""
        where, params = owner_filter(actor)
        rows = self.store.query(f"SELECT id, title, created, owner, answers FROM comparisons WHERE {where} "
                                "ORDER BY created DESC, id DESC LIMIT ?", (*params, limit))
        for row in rows:
            row["models"] = [a["model"] for a in json.loads(row.pop("answers"))]
        return rows

    def get(self, actor: User, comparison_id: int) -> dict:
        where, params = owner_filter(actor)
        rows = self.store.query(f"SELECT * FROM comparisons WHERE id = ? AND {where}", (comparison_id, *params))
        if not rows:
            raise ComparisonNotFound(f"comparison {comparison_id} does not exist")
        row = rows[0]
        row["settings"], row["answers"] = json.loads(row["settings"]), json.loads(row["answers"])
        return row

    def delete(self, actor: User, comparison_id: int) -> None:
        where, params = owner_filter(actor)
        if self.store.execute(f"DELETE FROM comparisons WHERE id = ? AND {where}", (comparison_id, *params)).rowcount == 0:
            raise ComparisonNotFound(f"comparison {comparison_id} does not exist")

    def export_json(self, actor: User, comparison_id: int) -> str:
        return json.dumps(self.get(actor, comparison_id), indent=2, ensure_ascii=False)
