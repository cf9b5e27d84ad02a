"""`chat`: one reply from a model, streamed to stdout; --json prints the reply with its figures.

The reply is made by the engine that holds the models (the web app's, or a background `serve` started
on demand), so several CLI chats at once share one copy of the model and are batched together.
Ctrl-C closes the connection, which cancels the generation in the engine.
"""
from __future__ import annotations

import json
import sys

from .. import control
from ..backend_choice import BACKENDS
from ..generation import SamplingParams
from ..models.catalog import DEFAULT_CHAT_MODEL, Catalog
from ..settings import Settings
from ..store import Store
from . import print_json
from .models import ensure_server


def register(subparsers) -> None:
    p = subparsers.add_parser("chat", help="ask a model, streaming its reply")
    p.add_argument("prompt", help="the user message")
    p.add_argument("--model", default=DEFAULT_CHAT_MODEL, help=f"catalog name (default {DEFAULT_CHAT_MODEL})")
    p.add_argument("--system", default="", help="system prompt")
    p.add_argument("--greedy", action="store_true", help="greedy decoding instead of sampling")
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-p", type=float)
    p.add_argument("--top-k", type=int, help="0: off")
    p.add_argument("--repetition-penalty", type=float)
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--stop", action="append", default=None, help="stop string (repeatable)")
    p.add_argument("--backend", default="auto", choices=BACKENDS,
                   help="auto (default: llama.cpp for a GGUF model on the CPU, up to 8 chats decoded together; "
                        "transformers on a GPU or for other models; the reason is printed), or force one")
    p.add_argument("--json", action="store_true", help="print the whole reply and its figures as JSON")
    p.set_defaults(func=run)


def params_from_args(args, sampling: dict) -> SamplingParams:
    """The model's recommended sampling, overridden by what was given on the command line."""
    return SamplingParams.for_model(
        sampling, do_sample=False if args.greedy else None, temperature=args.temperature, top_p=args.top_p,
        top_k=args.top_k, repetition_penalty=args.repetition_penalty, max_new_tokens=args.max_new_tokens,
        seed=args.seed, stop=args.stop)


def run(args) -> int:
    settings = Settings.from_env()
    # The catalog only, for the model's defaults: no Engine here, so a client starts in well under a second
    # and four at once do not fight the engine's generation for the CPU while they import.
    spec = Catalog(Store(settings.db_path)).get(args.model)
    params = params_from_args(args, spec.sampling)
    messages = ([{"role": "system", "content": args.system}] if args.system.strip() else [])
    messages.append({"role": "user", "content": args.prompt})
    ensure_server(settings)
    state = {"waiting": False}

    def on_event(tokens, message: str) -> None:
        event = json.loads(message)
        if event["queued"] is not None:
            if not args.json:
                sys.stderr.write(f"\rwaiting for {args.model}: {event['queued']} ahead of you ")
                sys.stderr.flush()
            state["waiting"] = True
            return
        if state["waiting"] and not args.json:
            sys.stderr.write("\n")
            state["waiting"] = False
        if not args.json:
            sys.stdout.write(event["text"])
            sys.stdout.flush()

    result = control.call(settings.home / "engine.sock", "chat", progress=on_event, model=args.model,
                          messages=messages, params=params.to_dict(), backend=args.backend)
    if args.json:
        print_json(result)
    else:
        stats = result["stats"]
        sys.stdout.write("\n")
        print(f"[{stats['tokens']} tokens, first token {stats['ttft_s']} s, {stats['tokens_per_s']} tokens/s, "
              f"{stats['finish_reason']}]", file=sys.stderr)
        if stats.get("backend_reason"):
            print(f"[backend {stats['backend_reason']}]", file=sys.stderr)
    return 0
