"""The CLI: python -m llmos_core <command> ... Everything the UI does, scripts can do here."""
from __future__ import annotations

import argparse
import importlib
import sys

from .errors import LLMOSError

# Each command lives in llmos_core/cli/<name>.py with `register(subparsers)`.
COMMANDS = ["models", "serve", "chat", "monitor", "jobs", "translate", "train", "collections", "ask", "web",
            "doctor", "mcp", "users", "keys", "evaluate", "feedback"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m llmos_core",
                                     description="LLM OS: run, train and watch language models on this machine.")
    parser.add_argument("--as", dest="as_user", metavar="NAME",
                        help="act as this user (their conversations, collections, jobs); default: the local admin")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"llmos_core.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.as_user:   # a name nobody has is refused before any command starts an engine
            from .accounts import Accounts
            from .settings import Settings
            from .store import Store
            Accounts(Store(Settings.from_env().db_path)).user_by_name(args.as_user)
        return int(args.func(args) or 0)
    except LLMOSError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
