"""Each user's default model per task ("Promote" on the Train page): the model Chat opens with, until they
pick another. Without one, the embedded default stands (catalog.DEFAULT_CHAT_MODEL for a causal LM).
A default is only a name: a promoted model that was removed since, or is no longer visible to its user,
falls back to the embedded default."""
from __future__ import annotations

import time

from ..accounts import User
from ..store import Store
from .catalog import CAUSAL_LM, DEFAULT_CHAT_MODEL

SCHEMA = """
CREATE TABLE IF NOT EXISTS model_defaults (
    owner INTEGER NOT NULL,
    task TEXT NOT NULL,
    model TEXT NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (owner, task)
);
"""
FALLBACK = {CAUSAL_LM: DEFAULT_CHAT_MODEL}


class ModelDefaults:
    def __init__(self, store: Store):
        self.store = store
        self.store.connection().executescript(SCHEMA)

    def set(self, actor: User, task: str, model: str) -> None:
        self.store.execute("INSERT OR REPLACE INTO model_defaults (owner, task, model, updated) VALUES (?, ?, ?, ?)",
                           (actor.id, task, model, time.time()))

    def get(self, actor: User, task: str = CAUSAL_LM) -> str | None:
        """The actor's own default for `task` (None: they promoted none)."""
        rows = self.store.query("SELECT model FROM model_defaults WHERE owner = ? AND task = ?", (actor.id, task))
        return rows[0]["model"] if rows else None

    def clear(self, actor: User, task: str = CAUSAL_LM) -> None:
        self.store.execute("DELETE FROM model_defaults WHERE owner = ? AND task = ?", (actor.id, task))
