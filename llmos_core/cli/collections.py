"""`collections`: document collections for `ask`.

    python -m llmos_core collections add NAME FILE... [--embed-model NAME]
    python -m llmos_core collections list [NAME] [--json]
    python -m llmos_core collections rm NAME [--file FILE]

Files are parsed in a limited child process, cut into passages and embedded here, with this process's
own engine (the embedding model is loaded under the memory budget, then freed).
"""
from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

from ..engine import Engine
from ..errors import InvalidInput
from ..settings import Settings
from ..usecases import ask
from . import acting_user, print_json, table


def register(subparsers) -> None:
    p = subparsers.add_parser("collections", help="document collections to ask questions of")
    sub = p.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="add files to a collection (made if new)")
    add.add_argument("name", help="collection name: lowercase letters, digits, - and _")
    add.add_argument("files", nargs="+", help="documents: " + " ".join(f".{t}" for t in ask.FILE_TYPES))
    add.add_argument("--embed-model", help="sentence-embedding model for a new collection (default all-minilm-l6-v2)")
    add.add_argument("--json", action="store_true")
    add.set_defaults(func=run_add)
    ls = sub.add_parser("list", help="the collections, or one collection's documents")
    ls.add_argument("name", nargs="?")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=run_list)
    rm = sub.add_parser("rm", help="delete a collection, or one file of it")
    rm.add_argument("name")
    rm.add_argument("--file", help="delete only this document")
    rm.set_defaults(func=run_rm)


def run_add(args) -> int:
    files = []
    for name in args.files:
        path = Path(name)
        if not path.is_file():
            raise InvalidInput(f"{path} does not exist or is not a file")
        files.append((path.name, path.read_bytes()))
    engine = Engine(Settings.from_env(), primary=False, start_threads=False)
    try:
        progress = None if args.json else (lambda done, total, what: print(f"[{done}/{total}] {what}", file=sys.stderr))
        reports = ask.add_files(engine, acting_user(args, engine.store), args.name, files, args.embed_model, progress)
    finally:
        engine.close()
    if args.json:
        print_json([asdict(r) for r in reports])
    else:
        print(table([asdict(r) for r in reports], ["name", "status", "chunks", "embedded", "error"]))
    return 1 if all(r.status == "failed" for r in reports) else 0


def run_list(args) -> int:
    engine = Engine(Settings.from_env(), primary=False, start_threads=False)
    try:
        actor = acting_user(args, engine.store)
        rows = ask.list_documents(engine, actor, args.name) if args.name else ask.list_collections(engine, actor)
    finally:
        engine.close()
    if args.json:
        print_json(rows)
    elif args.name:
        print(table(rows, ["name", "format", "size", "status", "chunks", "embedded", "error"]))
    else:
        print(table(rows, ["name", "documents", "chunks", "embedded", "embed_model"]))
    return 0


def run_rm(args) -> int:
    engine = Engine(Settings.from_env(), primary=False, start_threads=False)
    try:
        if args.file:
            ask.remove_document(engine, acting_user(args, engine.store), args.name, args.file)
        else:
            ask.remove_collection(engine, acting_user(args, engine.store), args.name)
    finally:
        engine.close()
    print(f"removed {args.file + ' from ' if args.file else ''}{args.name}")
    return 0
