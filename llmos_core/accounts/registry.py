"""`Accounts`, the engine's book of users: add, remove, passwords, logins (with back-off), API keys, limits.

Thread-safe: every method is one or a few SQLite statements through the Store (a connection per thread),
and the back-off keeps its own lock. A wrong name and a wrong password answer alike, and take as long:
an unknown name is checked against a dummy hash.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass, fields
from typing import Callable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ..errors import InvalidInput
from ..store import Store
from .throttle import Backoff
from .users import (LEGACY_ADMIN, LEGACY_MARK, LOCAL_ADMIN, SCHEMA, LoginRefused, LoginThrottled, NotAllowed, User,
                    UserNotFound, check_password, check_role, check_user_name, legacy_matches, legacy_password, now,
                    row_to_user)

# OWASP's argon2id minimum (19 MiB, 2 passes): about 50 ms here, so a login is quick and a guess is not cheap.
HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
KEY_PREFIX = "llmos-"
GiB = 1024 ** 3


class KeyNotFound(InvalidInput):
    hint = "see `python -m llmos_core keys list`"


@dataclass(frozen=True)
class Limits:
    """What one user may hold at once; None: no limit."""
    concurrent_generations: int | None = None
    queued_jobs: int | None = None
    storage_bytes: int | None = None


# A plain user's limits until an admin sets others; admins have none unless set.
DEFAULT_LIMITS = Limits(concurrent_generations=4, queued_jobs=8, storage_bytes=5 * GiB)
LIMIT_NAMES = tuple(f.name for f in fields(Limits))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Accounts:
    def __init__(self, store: Store, api_key: str | None = None,
                 on_first_admin: Callable[[User], None] | None = None):
        self.store = store
        self.store.connection().executescript(SCHEMA)
        self.api_key = api_key or None       # LLMOS_API_KEY: an admin key
        self.on_first_admin = on_first_admin  # hands what the local admin made to the first admin
        self.backoff = Backoff()
        self._dummy = ""                      # a hash to check unknown names against, made at the first login
        self._lock = threading.Lock()         # add_user: the first-admin check and the insert as one

    # ---- users ----
    def any_users(self) -> bool:
        return bool(self.store.query("SELECT 1 FROM users LIMIT 1"))

    def add_user(self, name: str, password: str, role: str = "user") -> User:
        name, role = check_user_name(name), check_role(role)
        hashed = HASHER.hash(check_password(password))
        return self._insert(name, role, hashed)

    def _insert(self, name: str, role: str, hashed: str) -> User:
        with self._lock:
            first_admin = role == "admin" and self.first_admin() is None
            with self.store.transaction() as conn:
                if conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                    raise InvalidInput(f"there is already a user {name!r}", "choose another name")
                user_id = conn.execute("INSERT INTO users (name, role, hash, created) VALUES (?, ?, ?, ?)",
                                       (name, role, hashed, now())).lastrowid
            user = User(int(user_id), name, role)
            self.store.add_event("user_add", name, f"user {name} added ({role})", role=role)
            if first_admin and self.on_first_admin is not None:
                self.on_first_admin(user)
        return user

    def list_users(self) -> list[dict]:
        return self.store.query("SELECT id, name, role, created, disabled FROM users ORDER BY name")

    def remove_user(self, name: str) -> None:
        user = self.user_by_name(name)
        if user.is_admin and len(self.store.query("SELECT id FROM users WHERE role = 'admin'")) == 1 and \
                len(self.store.query("SELECT id FROM users")) > 1:
            raise NotAllowed(f"{name} is the last admin", "make another admin first")
        self.store.execute("DELETE FROM users WHERE id = ?", (user.id,))   # keys and limits cascade
        self.store.add_event("user_remove", name, f"user {name} removed")

    def set_password(self, name: str, password: str) -> None:
        user = self.user_by_name(name)
        self.store.execute("UPDATE users SET hash = ? WHERE id = ?", (HASHER.hash(check_password(password)), user.id))
        self.backoff.succeed(f"user:{user.name}")
        self.store.add_event("user_password", name, f"password of {name} changed")

    def set_role(self, name: str, role: str) -> User:
        user = self.user_by_name(name)
        self.store.execute("UPDATE users SET role = ? WHERE id = ?", (check_role(role), user.id))
        return User(user.id, user.name, role)

    def user_by_id(self, user_id: int) -> User:
        rows = self.store.query("SELECT id, name, role FROM users WHERE id = ? AND disabled = 0", (int(user_id),))
        if not rows:
            raise UserNotFound(f"there is no user with id {user_id}")
        return row_to_user(rows[0])

    def user_by_name(self, name: str) -> User:
        rows = self.store.query("SELECT id, name, role FROM users WHERE name = ? AND disabled = 0",
                                (check_user_name(name),))
        if not rows:
            raise UserNotFound(f"there is no user {name!r}")
        return row_to_user(rows[0])

    def first_admin(self) -> User | None:
        rows = self.store.query("SELECT id, name, role FROM users WHERE role = 'admin' ORDER BY id LIMIT 1")
        return row_to_user(rows[0]) if rows else None

    def names(self) -> dict[int, str]:
        """Owner ids -> names, for showing whose a thing is (0: the local admin)."""
        return {0: LOCAL_ADMIN.name, **{r["id"]: r["name"] for r in self.store.query("SELECT id, name FROM users")}}

    # ---- logins ----
    def authenticate(self, name: str, password: str, *, address: str) -> User:
        """The user, or LoginRefused (wrong name or password, one message) or LoginThrottled (too many
        failures from this address or for this account lately). Every failure is logged as an event."""
        account = f"user:{str(name)[:64]}"
        keys = (f"address:{address}", account)
        wait = self.backoff.wait_s(*keys)
        if wait > 0:
            raise LoginThrottled(wait)
        user = self._check(name, password)
        if user is None:
            self.backoff.fail(*keys)
            self.store.add_event("login_failed", str(name)[:64], f"failed login for {str(name)[:64]!r} from {address}",
                                 address=address)
            raise LoginRefused("wrong name or password")
        self.backoff.succeed(*keys)
        return user

    def _check(self, name: str, password: str) -> User | None:
        if not isinstance(name, str) or not isinstance(password, str) or len(password) > 1024:
            return None
        rows = self.store.query("SELECT id, name, role, hash FROM users WHERE name = ? AND disabled = 0", (name,))
        if rows and rows[0]["hash"] == LEGACY_MARK or not rows and name == LEGACY_ADMIN and legacy_password():
            if not legacy_matches(password):
                return None
            return row_to_user(rows[0]) if rows else self._legacy_admin()
        try:
            self._dummy = self._dummy or HASHER.hash(secrets.token_hex(8))
            HASHER.verify(rows[0]["hash"] if rows else self._dummy, password)
        except (VerificationError, InvalidHashError):
            return None
        return row_to_user(rows[0]) if rows else None

    def _legacy_admin(self) -> User:
        """LLMOS_WEB_PASSWORD's account, made at its first login: an admin whose password is the variable."""
        try:
            return self._insert(LEGACY_ADMIN, "admin", LEGACY_MARK)
        except InvalidInput:          # made meanwhile by another thread
            return self.user_by_name(LEGACY_ADMIN)

    # ---- API keys ----
    def create_key(self, user_name: str) -> str:
        """A new key for the user, returned once: only its sha256 is kept."""
        user = self.user_by_name(user_name)
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        self.store.execute("INSERT INTO api_keys (user_id, prefix, hash, created) VALUES (?, ?, ?, ?)",
                           (user.id, key[:12], hash_key(key), now()))
        self.store.add_event("key_create", user.name, f"API key {key[:12]}… made for {user.name}")
        return key

    def list_keys(self, user: User | None) -> list[dict]:
        """The keys of `user` (None: everyone's), with their owner's name; never the key itself."""
        sql = ("SELECT k.id, u.name AS user, k.prefix, k.created, k.last_used FROM api_keys k "
               "JOIN users u ON u.id = k.user_id")
        if user is None:
            return self.store.query(sql + " ORDER BY k.id")
        return self.store.query(sql + " WHERE k.user_id = ? ORDER BY k.id", (user.id,))

    def revoke_key(self, key_id: int, *, by: User) -> None:
        """Its owner or an admin may revoke a key; anyone else is told it does not exist."""
        owner = "" if by.is_admin else " AND user_id = ?"
        params = (int(key_id),) if by.is_admin else (int(key_id), by.id)
        if self.store.execute(f"DELETE FROM api_keys WHERE id = ?{owner}", params).rowcount == 0:
            raise KeyNotFound(f"there is no API key {key_id}")
        self.store.add_event("key_revoke", by.name, f"API key {key_id} revoked by {by.name}")

    def user_for_key(self, key: str) -> User | None:
        """Who sends this key: its user, the admin for LLMOS_API_KEY (the first admin, or the local admin
        when none is made), or None."""
        if not isinstance(key, str) or not key or len(key) > 512:
            return None
        if self.api_key and hmac.compare_digest(hash_key(key), hash_key(self.api_key)):
            return self.first_admin() or LOCAL_ADMIN
        rows = self.store.query("SELECT u.id, u.name, u.role, k.id AS key_id, k.last_used FROM api_keys k "
                                "JOIN users u ON u.id = k.user_id WHERE k.hash = ? AND u.disabled = 0", (hash_key(key),))
        if not rows:
            return None
        if (rows[0]["last_used"] or 0) < now() - 60:   # a write a minute at most, not one per request
            self.store.execute("UPDATE api_keys SET last_used = ? WHERE id = ?", (now(), rows[0]["key_id"]))
        return row_to_user(rows[0])

    # ---- limits ----
    def limits_for(self, user: User) -> Limits:
        base = DEFAULT_LIMITS if not user.is_admin else Limits()
        rows = self.store.query("SELECT * FROM user_limits WHERE user_id = ?", (user.id,)) if user.id else []
        if not rows:
            return base
        return Limits(**{n: rows[0][n] if rows[0][n] is not None else getattr(base, n) for n in LIMIT_NAMES})

    def set_limits(self, name: str, **limits: int | None) -> Limits:
        """Set some of a user's limits (None: back to the default); the others stay."""
        user = self.user_by_name(name)
        unknown = set(limits) - set(LIMIT_NAMES)
        if unknown:
            raise InvalidInput(f"unknown limit {sorted(unknown)[0]!r}", f"known: {', '.join(LIMIT_NAMES)}")
        for key, value in limits.items():
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise InvalidInput(f"{key} must be a whole number from 0, got {value!r}")
        with self.store.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO user_limits (user_id) VALUES (?)", (user.id,))
            for key, value in limits.items():
                conn.execute(f"UPDATE user_limits SET {key} = ? WHERE user_id = ?", (value, user.id))
        return self.limits_for(user)
