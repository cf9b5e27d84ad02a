"""`ask`: a question answered from a document collection: the sentences that answer, quoted with their
citation, then the model's wording when every number, time and name in it is in the quotes.

    python -m llmos_core ask --collection handbook "How many days of leave do I get?" [--json]

Runs with this process's own engine: the embedding model finds the passages and ranks their sentences,
the chat model (default: the one measured best for Ask, rag/model_choice.py) words the answer from the
quotes. When no passage matches, or no sentence answers, it says so and shows no model text.
"""
from __future__ import annotations

import sys

from ..engine import Engine
from ..generation import SamplingParams
from ..rag.model_choice import default_ask_model
from ..settings import Settings
from ..usecases import ask
from . import acting_user, print_json


def register(subparsers) -> None:
    p = subparsers.add_parser("ask", help="answer a question from a document collection, with citations")
    p.add_argument("question")
    p.add_argument("--collection", required=True, help="see `collections list`")
    p.add_argument("--model", default=None, help="chat model that words the answer (default: the best measured)")
    p.add_argument("--top-k", type=int, default=5, help="passages retrieved (default 5)")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--json", action="store_true", help="print the answer, its quotes, checks and citations as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    engine = Engine(Settings.from_env(), primary=False, start_threads=False)
    try:
        model = args.model or default_ask_model(engine.catalog)
        params = SamplingParams.for_model(engine.catalog.get(model).sampling, max_new_tokens=args.max_new_tokens)
        plan = ask.prepare(engine, acting_user(args, engine.store), args.collection, args.question, model, params, top_k=args.top_k)
        result = ask.answer(engine, plan, params)
    finally:
        engine.close()
    if args.json:
        print_json({"question": args.question, "collection": args.collection, "model": model, **result.to_dict()})
        return 0
    print(result.text)
    if not result.found:
        return 0
    if not result.answered:
        print(f"[{result.verdict}]", file=sys.stderr)
    for c in result.citations:
        where = ", ".join(filter(None, [c["heading"], c["page"] and f"page {c['page']}"]))
        mark = "quoted" if c["cited"] else "closest" if not result.answered else "retrieved"
        print(f"[{c['number']}] {c['file']}{' - ' + where if where else ''} ({mark}): {c['passage'][:160]}",
              file=sys.stderr)
    return 0
