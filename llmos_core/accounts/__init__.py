"""Accounts: users and roles, logins with back-off, API keys, per-user limits, and ownership of stored data.

The one face of the package; `Engine.accounts` is the process's `Accounts`. Every use case takes the
acting `User` (no default: a forgotten argument fails, it never silently means admin).
  users.py      User, LOCAL_ADMIN, names, errors, the tables
  registry.py   Accounts: users, passwords (argon2id), logins, keys, limits
  throttle.py   the back-off per address and per account
  ownership.py  the owner column, the filter every read uses, per-user folders, the first admin's adoption
"""
from .ownership import OWNED_TABLES, OWNER_COLUMN, adopt_local, may_see, owner_filter, user_home
from .registry import DEFAULT_LIMITS, KEY_PREFIX, LIMIT_NAMES, Accounts, KeyNotFound, Limits
from .throttle import Backoff
from .users import (LOCAL_ADMIN, ROLES, LimitReached, LoginRefused, LoginThrottled, NotAllowed, User, UserNotFound, check_user_name)

__all__ = ["Accounts", "Backoff", "DEFAULT_LIMITS", "KEY_PREFIX", "KeyNotFound", "LIMIT_NAMES", "LOCAL_ADMIN",
           "LimitReached", "Limits", "LoginRefused", "LoginThrottled", "NotAllowed", "OWNED_TABLES", "OWNER_COLUMN", "ROLES", "User",
           "UserNotFound", "adopt_local", "check_user_name", "may_see", "owner_filter", "user_home"]
