"""Who is who: the users of one data folder, their roles, names and passwords (argon2id), in SQLite.

A user is `admin` or `user`. With no user made, whoever reaches the app on loopback (and the CLI, run by
the data folder's owner) is `LOCAL_ADMIN`, the implicit local admin, as before accounts existed. Names
may become folder names, so they are short slugs. LLMOS_WEB_PASSWORD keeps working as one admin account
named `admin` (its row made at the first login with it, marked so that the variable, not a stored hash,
is checked).
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import time
from dataclasses import dataclass

from ..errors import InvalidInput, LLMOSError

ROLES = ("admin", "user")
NAME = re.compile(r"^[a-z0-9_][a-z0-9_.-]{0,31}$")
LEGACY_ADMIN = "admin"          # the account LLMOS_WEB_PASSWORD stands for
LEGACY_MARK = "!env:LLMOS_WEB_PASSWORD"   # its hash column: checked against the variable, never a stored hash
MIN_PASSWORD = 8
MAX_PASSWORD = 1024             # argon2 hashes anything, but a megabyte of password is an attack, not a password

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,   -- never reused: a removed user's id must not own a newcomer's data
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('admin', 'user')),
    hash TEXT NOT NULL,
    created REAL NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS api_keys (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    prefix TEXT NOT NULL,           -- the first characters, to recognise a key in a list
    hash TEXT NOT NULL UNIQUE,      -- sha256 of the whole key (a random 32-byte secret needs no slow hash)
    created REAL NOT NULL,
    last_used REAL
);
CREATE TABLE IF NOT EXISTS user_limits (
    user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    concurrent_generations INTEGER,
    queued_jobs INTEGER,
    storage_bytes INTEGER
);
"""


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


# The implicit local admin: the loopback app with no user made, and the CLI run by the data folder's owner.
# Id 0 is never a row's id (AUTOINCREMENT starts at 1); what it owns passes to the first admin made.
LOCAL_ADMIN = User(0, "local", "admin")


class UserNotFound(InvalidInput):
    hint = "see `python -m llmos_core users list`"


class LoginRefused(LLMOSError):
    """Wrong name or wrong password: one message for both, so a guess does not learn which names exist."""
    hint = "check the name and the password"


class LoginThrottled(LLMOSError):
    def __init__(self, retry_after_s: float):
        self.retry_after_s = float(retry_after_s)
        super().__init__(f"too many failed logins; try again in {max(1, round(retry_after_s))} s",
                         "wait, then try again; an admin can set a new password with `users passwd`")


class NotAllowed(LLMOSError):
    hint = "ask an admin"


class LimitReached(LLMOSError):
    """A per-user limit (concurrent generations, queued jobs, storage) is reached."""
    hint = "wait for what runs to finish or delete something you keep; an admin can raise your limits"


def check_user_name(name: str) -> str:
    """The one gate for a user's name: lower-case letters, digits, _ . -, up to 32, no leading dot."""
    text = name if isinstance(name, str) else ""
    if not NAME.fullmatch(text):
        raise InvalidInput(f"{str(name)[:40]!r} is not a valid user name",
                           "use up to 32 lower-case letters, digits, '_', '.' or '-', not starting with '.' or '-'")
    return text


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}", "admin or user")
    return role


def check_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise InvalidInput(f"a password needs at least {MIN_PASSWORD} characters", "choose a longer one")
    if len(password) > MAX_PASSWORD:
        raise InvalidInput(f"a password may have at most {MAX_PASSWORD} characters", "choose a shorter one")
    return password


def legacy_password() -> str:
    return os.environ.get("LLMOS_WEB_PASSWORD", "")


def legacy_matches(given: str) -> bool:
    """Constant time, whatever the lengths: both sides are hashed to 32 bytes first."""
    expected = legacy_password()
    return bool(expected) and hmac.compare_digest(hashlib.sha256(given.encode()).digest(),
                                                  hashlib.sha256(expected.encode()).digest())


def row_to_user(row: dict) -> User:
    return User(int(row["id"]), row["name"], row["role"])


def now() -> float:
    return time.time()
