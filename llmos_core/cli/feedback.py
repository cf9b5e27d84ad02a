"""`feedback`: the preference records collected in Chat and Compare (thumbs, edits, choices).

    python -m llmos_core feedback list [--model M] [--kind pair|labelled] [--json]
    python -m llmos_core feedback export [--model M] [--kind pair|labelled] [--out FILE]
    python -m llmos_core feedback import FILE [--kind pair|labelled]
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..engine import Engine
from ..errors import InvalidInput
from ..feedback.store import LABELLED, PAIR
from ..settings import Settings
from ..usecases import feedback
from . import acting_user, print_json, table


def register(subparsers) -> None:
    p = subparsers.add_parser("feedback", help="list, export or import preference feedback (pairs, thumbs)")
    sub = p.add_subparsers(dest="feedback_command", required=True)
    for name, text in (("list", "the records, newest first"), ("export", "JSONL for training (DPO/ORPO: pairs; "
                                                                          "KTO: labelled)")):
        q = sub.add_parser(name, help=text)
        q.add_argument("--model", help="only the records of this model")
        q.add_argument("--kind", choices=(PAIR, LABELLED), default=None if name == "list" else PAIR)
        if name == "list":
            q.add_argument("--json", action="store_true")
        else:
            q.add_argument("--out", help="write here instead of standard output")
    q = sub.add_parser("import", help="add pairs (prompt/chosen/rejected) or labelled examples from JSONL or CSV")
    q.add_argument("file")
    q.add_argument("--kind", choices=(PAIR, LABELLED), default=PAIR)
    p.set_defaults(func=run)


def run(args) -> int:
    engine = Engine(Settings.from_env(), primary=False, start_threads=False)
    try:
        actor = acting_user(args, engine.store)
        if args.feedback_command == "import":
            path = Path(args.file)
            if not path.is_file():
                raise InvalidInput(f"{path} does not exist", "give the path of a .jsonl or .csv file")
            count = feedback.import_file(engine, actor, path.name, path.read_bytes(), kind=args.kind)
            print(f"added {count} {args.kind} records")
        elif args.feedback_command == "export":
            text = feedback.export_jsonl(engine, actor, args.model, args.kind)
            if args.out:
                Path(args.out).write_text(text, encoding="utf-8")
                print(f"wrote {text.count(chr(10))} rows to {args.out}", file=sys.stderr)
            else:
                sys.stdout.write(text)
        else:
            rows = feedback.list_feedback(engine, actor, args.model, args.kind)
            if args.json:
                print_json(rows)
            else:
                print(table([{"id": r["id"], "kind": r["kind"], "source": r["source"], "model": r["model"],
                              "prompt": r["prompt"][-1]["content"][:50]} for r in rows],
                            ["id", "kind", "source", "model", "prompt"]))
    finally:
        engine.close()
    return 0
