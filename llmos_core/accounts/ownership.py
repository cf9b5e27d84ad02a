"""Whose a stored thing is: every owned row carries `owner` (a user id; 0: the local admin), and every
read filters by it. A user reads only their own rows; an admin reads all, with the owner's name to show.
Another user's id reads exactly as a missing one (the stores raise their usual "not found").

Files a user keeps (datasets, the translation memory and glossary) live under `user_home`: the data
folder itself for the local admin (where they were before accounts), `users/<id>/` for everyone else.
When the first admin is made, what the local admin owned (every pre-accounts row and file) becomes theirs.
"""
from __future__ import annotations

import logging
from pathlib import Path

from ..paths import inside, secure_folder
from .users import User

# The tables whose rows have an owner (each gains the column through Store's migration of added columns).
OWNED_TABLES = ("conversations", "comparisons", "jobs", "models", "rag_collections", "feedback", "model_defaults")
OWNER_COLUMN = "owner INTEGER NOT NULL DEFAULT 0"
# Per-user files, relative to the user's home: moved to the first admin's home with the rows.
USER_FILES = ("translate/memory.json", "translate/glossary.json", "datasets")


def owner_filter(actor: User, column: str = "owner") -> tuple[str, tuple]:
    """An SQL condition and its parameters: the actor's rows, or every row for an admin."""
    if not isinstance(actor, User):
        raise TypeError(f"an acting User is required, got {actor!r}")
    if actor.is_admin:
        return "1 = 1", ()
    return f"{column} = ?", (actor.id,)


def may_see(actor: User, owner: int | None) -> bool:
    if not isinstance(actor, User):
        raise TypeError(f"an acting User is required, got {actor!r}")
    return actor.is_admin or owner == actor.id


def user_home(home: Path, actor: User) -> Path:
    """Where the actor's own files live: the data folder for the local admin, else users/<id>/."""
    if not isinstance(actor, User):
        raise TypeError(f"an acting User is required, got {actor!r}")
    if actor.id == 0:
        return Path(home)
    return secure_folder(Path(home) / "users" / str(int(actor.id)))


def adopt_local(store, home: Path, admin: User) -> None:
    """The first admin is made: the local admin's rows (owner 0: everything from before accounts) and
    files become theirs."""
    tables = {r["name"] for r in store.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    with store.transaction() as conn:
        for table in OWNED_TABLES:
            if table in tables:
                conn.execute(f"UPDATE {table} SET owner = ? WHERE owner = 0", (admin.id,))
    target = user_home(home, admin)
    for relative in USER_FILES:
        source = Path(home) / relative
        if source.exists() and not (target / relative).exists():
            try:
                (target / relative).parent.mkdir(parents=True, exist_ok=True)
                inside(home, source, "a file to hand over").rename(target / relative)
            except OSError as exc:
                logging.getLogger(__name__).warning("could not hand %s to %s: %s", source, admin.name, exc)
    store.add_event("adopt", admin.name, f"the local admin's data now belongs to {admin.name}")
