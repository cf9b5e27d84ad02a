"""`keys`: API keys per user. `create --user NAME` prints the key once (only its hash is kept), `list`, `revoke ID`.

The local admin (and an admin given with --as) manages everyone's keys; a user given with --as, their own.
"""
from __future__ import annotations

from ..accounts import Accounts, NotAllowed
from ..settings import Settings
from ..store import Store
from . import acting_user, print_json, table


def register(subparsers) -> None:
    parser = subparsers.add_parser("keys", help="API keys: a request with a user's key acts as that user")
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("create", help="make a key for a user; it is shown once")
    p.add_argument("--user", required=True)
    p = sub.add_parser("list", help="keys (their first characters, never the keys)")
    p.add_argument("--user")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("revoke", help="revoke a key by its id (see `keys list`)")
    p.add_argument("id", type=int)
    parser.set_defaults(func=run)


def run(args) -> int:
    store = Store(Settings.from_env().db_path)
    accounts = Accounts(store)
    actor = acting_user(args, store)
    if args.action == "create":
        if not actor.is_admin and args.user != actor.name:
            raise NotAllowed(f"{actor.name} may make keys only for themself")
        print(accounts.create_key(args.user))
        print("(shown once: keep it now; send it as 'Authorization: Bearer KEY')", flush=True)
    elif args.action == "list":
        if args.user:
            if not actor.is_admin and args.user != actor.name:
                raise NotAllowed(f"{actor.name} may list only their own keys")
            rows = accounts.list_keys(accounts.user_by_name(args.user))
        else:
            rows = accounts.list_keys(None if actor.is_admin else actor)
        if args.json:
            print_json(rows)
        else:
            print(table(rows, ["id", "user", "prefix", "created", "last_used"]))
    else:
        accounts.revoke_key(args.id, by=actor)
        print(f"key {args.id} revoked")
    return 0
