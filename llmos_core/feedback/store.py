"""Feedback records, per user, in SQLite: what a person said about a reply, with what it answered.

A record keeps the conversation so far (`prompt`: messages ending with the user's turn), the reply as the
model wrote it (`completion`), the model and its sampling settings, and what the person said:
    label 1 / 0          thumbs up / down: a labelled example (KTO)
    chosen + rejected    a preference pair (DPO, ORPO): an edited reply (the edit is chosen, the original
                         rejected), or a Compare choice (the answer picked is chosen, another one rejected)
One record per rated thing (`ref`, e.g. "message:12", "comparison:3:1"): rating it again replaces it.
Every read filters by owner (accounts/ownership.py): another user's record reads as a missing one.
"""
from __future__ import annotations

import json
import time

from ..accounts import User, owner_filter
from ..errors import InvalidInput
from ..store import Store
from .pairs import LabelledExample, PreferencePair

SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY,
    owner INTEGER NOT NULL DEFAULT 0,
    source TEXT NOT NULL,            -- chat | compare | upload
    ref TEXT,                        -- what was rated (message:ID, comparison:ID:INDEX); NULL for uploads
    model TEXT NOT NULL DEFAULT '',
    settings TEXT NOT NULL DEFAULT '{}',
    prompt TEXT NOT NULL,            -- JSON messages, ending with the user's turn
    completion TEXT NOT NULL DEFAULT '',   -- the reply as written (thumbs)
    label INTEGER,                   -- 1 up, 0 down, NULL for a pair
    chosen TEXT,
    rejected TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_owner ON feedback(owner, model, updated);
CREATE UNIQUE INDEX IF NOT EXISTS feedback_ref ON feedback(owner, ref);
"""
PAIR, LABELLED = "pair", "labelled"
LIST_LIMIT = 10_000


class FeedbackNotFound(InvalidInput):
    hint = "it may have been deleted in another tab; reload the page"


class FeedbackStore:
    def __init__(self, store: Store):
        self.store = store
        self.store.connection().executescript(SCHEMA)

    def put(self, actor: User, *, source: str, ref: str | None, model: str, settings: dict, prompt: list[dict],
            completion: str = "", label: bool | None = None, chosen: str | None = None,
            rejected: str | None = None) -> int:
        """Add a record, or replace the actor's record of the same `ref`. Returns its id."""
        owner_filter(actor)   # an actor is required
        if label is None and (chosen is None or rejected is None):
            raise InvalidInput("feedback needs a label or a chosen and a rejected reply")
        now = time.time()
        values = (source, model or "", json.dumps(settings or {}), json.dumps(prompt), completion,
                  None if label is None else int(bool(label)), chosen, rejected, now)
        with self.store.transaction() as conn:
            if ref is not None:
                row = conn.execute("SELECT id FROM feedback WHERE owner = ? AND ref = ?", (actor.id, ref)).fetchone()
                if row is not None:
                    conn.execute("UPDATE feedback SET source = ?, model = ?, settings = ?, prompt = ?, completion = ?, "
                                 "label = ?, chosen = ?, rejected = ?, updated = ? WHERE id = ?", (*values, row[0]))
                    return int(row[0])
            cursor = conn.execute(
                "INSERT INTO feedback (source, model, settings, prompt, completion, label, chosen, rejected, updated, "
                "owner, ref, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (*values, actor.id, ref, now))
            return int(cursor.lastrowid)

    def list(self, actor: User, model: str | None = None, kind: str | None = None, limit: int = LIST_LIMIT,
             mine: bool = True) -> list[dict]:
        """The actor's own records, newest first (an admin's with `mine=False`: everyone's); `kind` PAIR or
        LABELLED. Own by default, as Chat lists only one's own conversations: an export trains on it."""
        where, params = ("owner = ?", (actor.id,)) if mine else owner_filter(actor)
        if model:
            where, params = where + " AND model = ?", (*params, model)
        if kind == PAIR:
            where += " AND chosen IS NOT NULL"
        elif kind == LABELLED:
            where += " AND chosen IS NULL"
        return _decoded(self.store.query(f"SELECT * FROM feedback WHERE {where} ORDER BY updated DESC, id DESC "
                                         "LIMIT ?", (*params, int(limit))))

    def by_refs(self, actor: User, prefix: str) -> dict[str, dict]:
        """The actor's own records whose ref is `prefix` or starts with `prefix:`, by ref (what Chat and
        Compare draw as already rated)."""
        return {row["ref"]: row for row in _decoded(self.store.query(
            "SELECT * FROM feedback WHERE owner = ? AND (ref = ? OR substr(ref, 1, ?) = ?)",
            (actor.id, prefix, len(prefix) + 1, prefix + ":")))}

    def models(self, actor: User) -> list[str]:
        """The models the actor's own records name."""
        owner_filter(actor)   # an actor is required
        return [r["model"] for r in self.store.query(
            "SELECT DISTINCT model FROM feedback WHERE owner = ? AND model != '' ORDER BY model", (actor.id,))]

    def delete(self, actor: User, feedback_id: int) -> None:
        where, params = owner_filter(actor)
        if self.store.execute(f"DELETE FROM feedback WHERE id = ? AND {where}", (feedback_id, *params)).rowcount == 0:
            raise FeedbackNotFound(f"feedback {feedback_id} does not exist")

    def delete_ref(self, actor: User, ref: str) -> None:
        """Take back what the actor said about `ref` (nothing happens if they said nothing)."""
        self.store.execute("DELETE FROM feedback WHERE owner = ? AND (ref = ? OR substr(ref, 1, ?) = ?)",
                           (actor.id, ref, len(ref) + 1, ref + ":"))


def _decoded(rows: list[dict]) -> list[dict]:
    for row in rows:
        row["prompt"], row["settings"] = json.loads(row["prompt"]), json.loads(row["settings"])
        row["kind"] = PAIR if row["chosen"] is not None else LABELLED
    return rows


def as_pair(row: dict) -> PreferencePair:
    return PreferencePair(row["prompt"], row["chosen"], row["rejected"], row["model"] or None, row["settings"])


def as_labelled(row: dict) -> LabelledExample:
    return LabelledExample(row["prompt"], row["completion"], bool(row["label"]), row["model"] or None, row["settings"])
