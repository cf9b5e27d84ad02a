"""Per-user storage: what a user keeps (conversations' text, collections' documents, their own files),
counted against `Limits.storage_bytes` before anything new is kept."""
from __future__ import annotations

from pathlib import Path

from ..accounts import LimitReached, User, user_home
from ..errors import format_bytes


def _folder_bytes(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def storage_used(engine, actor: User) -> int:
    """Bytes the actor's rows and files hold (the local admin's files: only the per-user ones)."""
    store = engine.store
    text = store.query("SELECT COALESCE(SUM(LENGTH(m.content)), 0) AS n FROM messages m "
                       "JOIN conversations c ON c.id = m.conversation_id WHERE c.owner = ?", (actor.id,))[0]["n"]
    tables = {r["name"] for r in store.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    documents = 0
    if "rag_documents" in tables:
        documents = store.query("SELECT COALESCE(SUM(d.size), 0) AS n FROM rag_documents d JOIN rag_collections c "
                                "ON c.name = d.collection WHERE c.owner = ?", (actor.id,))[0]["n"]
    own = 0 if actor.id == 0 else _folder_bytes(user_home(engine.settings.home, actor))
    return int(text) + int(documents) + own


def check_storage(engine, actor: User, adding: int) -> None:
    """LimitReached when keeping `adding` more bytes would pass the actor's storage limit."""
    limit = engine.accounts.limits_for(actor).storage_bytes
    if limit is None:
        return
    used = storage_used(engine, actor)
    if used + adding > limit:
        raise LimitReached(f"keeping {format_bytes(adding)} more would pass your storage limit of "
                           f"{format_bytes(limit)} ({format_bytes(used)} used)",
                           "delete conversations, collections or files you no longer need; an admin can raise it")
