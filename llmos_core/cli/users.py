"""`users`: add, list, remove, passwd, limits. The password comes from a prompt (asked twice) or --password-file.

Run by the data folder's owner, the CLI is the local admin; `--as NAME` makes it act as a user, and only an
admin may manage users.
"""
from __future__ import annotations

import getpass
import sys
from pathlib import Path

from ..accounts import LIMIT_NAMES, ROLES, Accounts, NotAllowed, adopt_local
from ..errors import InvalidInput
from ..settings import Settings
from ..store import Store
from . import acting_user, print_json, table


def register(subparsers) -> None:
    parser = subparsers.add_parser("users", help="accounts: who may log in to the app and the API")
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("add", help="make a user (the first admin made takes over what the local admin owned)")
    p.add_argument("name")
    p.add_argument("--role", choices=ROLES, default="user")
    p.add_argument("--password-file", help="read the password from this file's first line (else a prompt)")
    p = sub.add_parser("list", help="the users, their roles and limits")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("remove", help="remove a user (their keys go with them; what they made stays, for admins)")
    p.add_argument("name")
    p = sub.add_parser("passwd", help="set a user's password")
    p.add_argument("name")
    p.add_argument("--password-file")
    p = sub.add_parser("limits", help="set a user's limits (none: back to the default)")
    p.add_argument("name")
    for limit in LIMIT_NAMES:
        p.add_argument(f"--{limit.replace('_', '-')}", metavar="N|none")
    parser.set_defaults(func=run)


def read_password(path: str | None, confirm: bool = True) -> str:
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(f"cannot read the password file {path}: {exc.strerror or exc}") from exc
        return text.splitlines()[0] if text.strip() else ""
    if not sys.stdin.isatty():
        raise InvalidInput("no terminal to ask the password on", "give --password-file FILE")
    password = getpass.getpass("Password: ")
    if confirm and getpass.getpass("Again: ") != password:
        raise InvalidInput("the two passwords differ", "type the same password twice")
    return password


def _limit(text: str | None):
    if text is None or text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError as exc:
        raise InvalidInput(f"a limit is a whole number or 'none', got {text!r}") from exc


def run(args) -> int:
    settings = Settings.from_env()
    store = Store(settings.db_path)
    accounts = Accounts(store, on_first_admin=lambda admin: adopt_local(store, settings.home, admin))
    actor = acting_user(args, store)
    if not actor.is_admin:
        raise NotAllowed(f"{actor.name} is not an admin; only an admin manages users")
    if args.action == "add":
        user = accounts.add_user(args.name, read_password(args.password_file), args.role)
        print(f"user {user.name} added ({user.role}, id {user.id})")
    elif args.action == "list":
        rows = accounts.list_users()
        for row in rows:
            row.update(vars(accounts.limits_for(accounts.user_by_id(row["id"]))) if not row["disabled"] else {})
        if args.json:
            print_json(rows)
        else:
            print(table(rows, ["id", "name", "role", *LIMIT_NAMES]))
    elif args.action == "remove":
        accounts.remove_user(args.name)
        print(f"user {args.name} removed")
    elif args.action == "passwd":
        accounts.set_password(args.name, read_password(args.password_file))
        print(f"password of {args.name} changed")
    else:
        given = {n: _limit(getattr(args, n)) for n in LIMIT_NAMES if getattr(args, n) is not None}
        print_json(vars(accounts.set_limits(args.name, **given)))
    return 0
