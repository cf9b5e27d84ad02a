"""One module per CLI command; each has register(subparsers) and prints JSON with --json."""
from __future__ import annotations

import json
import sys

from ..accounts import LOCAL_ADMIN, Accounts, User
from ..present import format_bytes


def acting_user(args, store) -> User:
    """Who a command acts as: the global `--as NAME`, else the local admin (the data folder's owner runs it)."""
    name = getattr(args, "as_user", None)
    return Accounts(store).user_by_name(name) if name else LOCAL_ADMIN


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def progress_printer(label: str = ""):
    """A progress callback that redraws one line on stderr."""
    def report(fraction: float, message: str) -> None:
        bar = "#" * int(fraction * 30)
        sys.stderr.write(f"\r{label}[{bar:<30}] {fraction * 100:5.1f}% {message[:60]:<60}")
        sys.stderr.flush()
        if fraction >= 1.0:
            sys.stderr.write("\n")
    return report


def table(rows: list[dict], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return "-"
    return str(value)


__all__ = ["acting_user", "print_json", "progress_printer", "table", "format_bytes"]
