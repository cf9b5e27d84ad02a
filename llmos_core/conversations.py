"""Saved conversations: create, list, rename, delete, messages, export (Markdown and JSON), in SQLite.

Each conversation records the model and the sampling settings it used. Writes that extend a
conversation say which message they expect to be the last; if another tab changed it meanwhile, the
write is refused with Conflict, and while one reply is being written the conversation is claimed
(`answering`), so two tabs never interleave their turns.

Every conversation has an owner (accounts/ownership.py): create, list, get, messages, rename, settings,
delete and export take the acting user, and another user's id reads as a missing one. The message writes
(append, replace_last, ...) come after the use case has read the conversation as its actor (usecases/chat.py).
"""
from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

from .accounts import User, owner_filter
from .errors import Busy, InvalidInput, LLMOSError
from .store import Store

TITLE_LENGTH = 60


class Conflict(LLMOSError):
    hint = "the conversation was changed in another tab or window; it has been reloaded, send your message again"


class ConversationNotFound(InvalidInput):
    hint = "it may have been deleted in another tab; pick another conversation or start a new one"


def title_from(text: str) -> str:
    """The first line of the first message, shortened."""
    line = " ".join(text.strip().split())
    return (line[: TITLE_LENGTH - 1] + "…") if len(line) > TITLE_LENGTH else (line or "New chat")


def group_by_day(rows: list[dict], now: float | None = None) -> list[tuple[str, list[dict]]]:
    """Rows (newest first, each with `updated`) -> [(label, rows)]: Today, Yesterday, then the date."""
    today = time.localtime(now if now is not None else time.time())
    start = time.mktime((today.tm_year, today.tm_mon, today.tm_mday, 0, 0, 0, 0, 0, -1))
    groups: list[tuple[str, list[dict]]] = []
    for row in rows:
        if row["updated"] >= start:
            label = "Today"
        elif row["updated"] >= start - 86400:
            label = "Yesterday"
        else:
            label = time.strftime("%a %d %b %Y", time.localtime(row["updated"]))
        if not groups or groups[-1][0] != label:
            groups.append((label, []))
        groups[-1][1].append(row)
    return groups


class Conversations:
    def __init__(self, store: Store):
        self.store = store
        self._answering: set[int] = set()     # conversations with a reply being written (this process)
        self._lock = threading.Lock()
        self._released = threading.Condition(self._lock)

    @contextmanager
    def answering(self, conversation_id: int) -> Iterator[None]:
        """Claim a conversation for one reply, so a second tab cannot add turns in the middle of it."""
        with self._lock:
            if conversation_id in self._answering:
                raise Busy("a reply in this conversation is being written in another tab",
                           "wait for it to finish (or stop it there), then send again")
            self._answering.add(conversation_id)
        try:
            yield
        finally:
            with self._lock:
                self._answering.discard(conversation_id)
                self._released.notify_all()

    def is_answering(self, conversation_id: int) -> bool:
        with self._lock:
            return conversation_id in self._answering

    def wait_until_idle(self, conversation_id: int, timeout: float) -> bool:
        """Wait (up to `timeout` s) until no reply is being written to it; True if none is."""
        with self._lock:
            return self._released.wait_for(lambda: conversation_id not in self._answering, timeout)

    # ---- conversations ----
    def create(self, actor: User, model: str, settings: dict | None = None, title: str = "New chat") -> int:
        owner_filter(actor)   # an actor is required
        now = time.time()
        cursor = self.store.execute(
            "INSERT INTO conversations (title, model, settings, created, updated, owner) VALUES (?, ?, ?, ?, ?, ?)",
            (title.strip()[:200] or "New chat", model, json.dumps(settings or {}), now, now, actor.id))
        return int(cursor.lastrowid)

    def list(self, actor: User, limit: int = 200, search: str = "", mine: bool = False) -> list[dict]:
        """The actor's conversations (an admin's: everyone's, unless `mine`), newest first; `search` matches
        titles and message text (case-insensitive)."""
        where, params = owner_filter(actor, "c.owner")
        if mine:
            where, params = "c.owner = ?", (actor.id,)
        if search.strip():
            pattern = "%" + search.strip()[:200].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where += (" AND (c.title LIKE ? ESCAPE '\\' OR EXISTS (SELECT 1 FROM messages s WHERE "
                      "s.conversation_id = c.id AND s.content LIKE ? ESCAPE '\\'))")
            params += (pattern, pattern)
        return self.store.query(
            "SELECT c.id, c.title, c.model, c.created, c.updated, c.owner, COUNT(m.id) AS messages FROM conversations c "
            f"LEFT JOIN messages m ON m.conversation_id = c.id WHERE {where} GROUP BY c.id "
            "ORDER BY c.updated DESC, c.id DESC LIMIT ?", (*params, int(limit)))

    def check(self, actor: User, conversation_id: int) -> None:
        """ConversationNotFound unless it exists and the actor may see it."""
        where, params = owner_filter(actor)
        if not self.store.query(f"SELECT 1 FROM conversations WHERE id = ? AND {where}", (conversation_id, *params)):
            raise ConversationNotFound(f"conversation {conversation_id} does not exist")

    def get(self, actor: User, conversation_id: int) -> dict:
        where, params = owner_filter(actor)
        rows = self.store.query(f"SELECT * FROM conversations WHERE id = ? AND {where}", (conversation_id, *params))
        if not rows:
            raise ConversationNotFound(f"conversation {conversation_id} does not exist")
        conversation = rows[0]
        conversation["settings"] = json.loads(conversation["settings"])
        conversation["messages"] = self._messages(conversation_id)
        return conversation

    def messages(self, actor: User, conversation_id: int) -> list[dict]:
        self.check(actor, conversation_id)
        return self._messages(conversation_id)

    def _messages(self, conversation_id: int) -> list[dict]:
        rows = self.store.query("SELECT id, role, content, stats, created FROM messages WHERE conversation_id = ? "
                                "ORDER BY id", (conversation_id,))
        for row in rows:
            row["stats"] = json.loads(row["stats"])
        return rows

    def rename(self, actor: User, conversation_id: int, title: str) -> None:
        title = title.strip()
        if not title:
            raise InvalidInput("a conversation needs a title", "type a title")
        self._touch(actor, conversation_id, title=title[:200])

    def set_settings(self, actor: User, conversation_id: int, model: str, settings: dict) -> None:
        self._touch(actor, conversation_id, model=model, settings=json.dumps(settings))

    def delete(self, actor: User, conversation_id: int) -> None:
        where, params = owner_filter(actor)
        cursor = self.store.execute(f"DELETE FROM conversations WHERE id = ? AND {where}", (conversation_id, *params))
        if cursor.rowcount == 0:   # messages cascade
            raise ConversationNotFound(f"conversation {conversation_id} does not exist")

    def _touch(self, actor: User, conversation_id: int, **columns: Any) -> None:
        sets = "".join(f", {name} = ?" for name in columns)
        where, params = owner_filter(actor)
        cursor = self.store.execute(f"UPDATE conversations SET updated = ?{sets} WHERE id = ? AND {where}",
                                    (time.time(), *columns.values(), conversation_id, *params))
        if cursor.rowcount == 0:
            raise ConversationNotFound(f"conversation {conversation_id} does not exist")

    # ---- messages ----
    def last_message_id(self, conversation_id: int) -> int | None:
        rows = self.store.query("SELECT MAX(id) AS id FROM messages WHERE conversation_id = ?", (conversation_id,))
        return rows[0]["id"]

    def append(self, conversation_id: int, role: str, content: str, stats: dict | None = None,
               expect_last: int | None | str = "any") -> int:
        """Add a message. `expect_last`: the id the caller believes is last (None: no messages yet)."""
        if role not in ("system", "user", "assistant"):
            raise InvalidInput(f"unknown role {role!r}")
        with self.store.transaction() as conn:
            exists = conn.execute("SELECT title FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
            if exists is None:
                raise ConversationNotFound(f"conversation {conversation_id} does not exist")
            last = conn.execute("SELECT MAX(id) FROM messages WHERE conversation_id = ?",
                                (conversation_id,)).fetchone()[0]
            if expect_last != "any" and last != expect_last:
                raise Conflict("this conversation changed in another tab")
            now = time.time()
            cursor = conn.execute(
                "INSERT INTO messages (conversation_id, role, content, stats, created) VALUES (?, ?, ?, ?, ?)",
                (conversation_id, role, content, json.dumps(stats or {}), now))
            if last is None and role == "user" and exists["title"] == "New chat":
                conn.execute("UPDATE conversations SET title = ? WHERE id = ?", (title_from(content), conversation_id))
            conn.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, conversation_id))
            return int(cursor.lastrowid)

    def update_message(self, message_id: int, content: str, stats: dict | None = None) -> None:
        """Continue writes the longer reply over the old one."""
        self.store.execute("UPDATE messages SET content = ?, stats = ? WHERE id = ?",
                           (content, json.dumps(stats or {}), message_id))

    def replace_last(self, conversation_id: int, message_id: int, content: str, stats: dict | None = None) -> int:
        """Regenerate: the new reply takes the old one's place in one transaction, so there is never a moment
        without either. It gets a new id (ids are never reused), and only the last message may be replaced."""
        with self.store.transaction() as conn:
            _expect_last(conn, conversation_id, message_id)
            conn.execute("DELETE FROM messages WHERE id = ?", (message_id,))
            cursor = conn.execute(
                "INSERT INTO messages (conversation_id, role, content, stats, created) VALUES (?, ?, ?, ?, ?)",
                (conversation_id, "assistant", content, json.dumps(stats or {}), time.time()))
            conn.execute("UPDATE conversations SET updated = ? WHERE id = ?", (time.time(), conversation_id))
            return int(cursor.lastrowid)

    def delete_message(self, conversation_id: int, message_id: int) -> None:
        """Only the last message may go (another tab may have added one after it)."""
        with self.store.transaction() as conn:
            _expect_last(conn, conversation_id, message_id)
            conn.execute("DELETE FROM messages WHERE id = ?", (message_id,))

    # ---- export ----
    def export_json(self, actor: User, conversation_id: int) -> str:
        c = self.get(actor, conversation_id)
        data = {"id": c["id"], "title": c["title"], "model": c["model"], "settings": c["settings"],
                "created": c["created"], "updated": c["updated"],
                "messages": [{"role": m["role"], "content": m["content"], "stats": m["stats"], "created": m["created"]}
                             for m in c["messages"]]}
        return json.dumps(data, indent=2, ensure_ascii=False)

    def export_markdown(self, actor: User, conversation_id: int) -> str:
        c = self.get(actor, conversation_id)
        settings = ", ".join(f"{k}={v}" for k, v in c["settings"].items() if k != "system")
        lines = [f"# {c['title']}", "", f"- Model: `{c['model']}`", f"- Settings: {settings or 'defaults'}",
                 f"- Created: {time.strftime('%Y-%m-%d %H:%M', time.localtime(c['created']))}", ""]
        system = c["settings"].get("system")
        if system:
            lines += ["## System", "", system, ""]
        for m in c["messages"]:
            lines += [f"## {m['role'].capitalize()}", "", m["content"], ""]
            stats = m["stats"]
            if m["role"] == "assistant" and stats.get("tokens"):
                lines += [f"*{stats['tokens']} tokens, first token {stats.get('ttft_s')} s, "
                          f"{stats.get('tokens_per_s')} tokens/s*", ""]
        return "\n".join(lines)


def _expect_last(conn, conversation_id: int, message_id: int) -> None:
    """Only the last message may be replaced or deleted: another tab may have added one after it."""
    last = conn.execute("SELECT MAX(id) FROM messages WHERE conversation_id = ?", (conversation_id,)).fetchone()[0]
    if last != message_id:
        raise Conflict("this conversation changed in another tab")
