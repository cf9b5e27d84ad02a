"""`ask`: a question answered from a document collection, with the passages it cites.

    python -m llmos_core ask --collection handbook "How many days of leave do I get?" [--json]

Runs with this process's own engine: the embedding model finds the passages, the chat model (default
the embedded SmolLM2) answers from them. When no passage matches, it says so and asks no model.
"""
from __future__ import annotations

import sys

from ..engine import Engine
from ..generation import SamplingParams
from ..models.catalog import DEFAULT_CHAT_MODEL
from ..settings import Settings
from ..usecases import ask
from . import acting_user, print_json


def register(subparsers) -> None:
    p = subparsers.add_parser("ask", help="answer a question from a document collection, with citations")
    p.add_argument("question")
    p.add_argument("--collection", required=True, help="see `collections list`")
    p.add_argument("--model", default=DEFAULT_CHAT_MODEL, help=f"chat model (default {DEFAULT_CHAT_MODEL})")
    p.add_argument("--top-k", type=int, default=5, help="passages retrieved (default 5)")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--json", action="store_true", help="print the answer, its citations and the context as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    engine = Engine(Settings.from_env(), primary=False, start_threads=False)
    try:
        params = SamplingParams.for_model(engine.catalog.get(args.model).sampling, max_new_tokens=args.max_new_tokens)
        plan = ask.prepare(engine, acting_user(args, engine.store), args.collection, args.question, args.model, params, top_k=args.top_k)
        streaming = not args.json and plan.found
        result = ask.answer(engine, plan, params, on_text=(lambda t: (sys.stdout.write(t), sys.stdout.flush()))
                            if streaming else None)
    finally:
        engine.close()
    if args.json:
        print_json({"question": args.question, "collection": args.collection, "model": args.model,
                    **result.to_dict()})
        return 0
    if not result.found:
        print(result.text)
        return 0
    print()
    meter = result.meter
    if plan.context.whole_document:
        print(f"\n[sent {plan.context.whole_document} whole]", file=sys.stderr)
    print(f"[context: {meter['used']} of {meter['window']} tokens; passages {meter['passages']}]", file=sys.stderr)
    for c in result.citations:
        where = ", ".join(filter(None, [c["heading"], c["page"] and f"page {c['page']}"]))
        mark = "cited" if c["cited"] else "given"
        print(f"[{c['number']}] {c['file']}{' - ' + where if where else ''} ({mark}): {c['passage'][:160]}")
    return 0
