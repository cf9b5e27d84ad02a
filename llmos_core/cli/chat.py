"""`chat`: one reply from a model, streamed to stdout; --json prints the reply with its figures.
`chat --compare A,B "prompt"`: the same prompt to two or three models at once, each answer printed as it
ends (--json: all of them with their figures), saved as a comparison the Chat page can reopen.

The reply is made by the engine that holds the models (the web app's, or a background `serve` started
on demand), so several CLI chats at once share one copy of the model and are batched together.
Ctrl-C closes the connection, which cancels the generation in the engine.
"""
from __future__ import annotations

import json
import queue
import sys
import threading

from .. import control
from ..backend_choice import BACKENDS
from ..comparisons import Comparisons
from ..generation import SamplingParams, TokenEvent
from ..models.catalog import DEFAULT_CHAT_MODEL, Catalog
from ..settings import Settings
from ..store import Store
from ..usecases import compare
from . import acting_user, print_json
from .models import ensure_server


def register(subparsers) -> None:
    p = subparsers.add_parser("chat", help="ask a model, streaming its reply")
    p.add_argument("prompt", help="the user message")
    p.add_argument("--model", default=DEFAULT_CHAT_MODEL, help=f"catalog name (default {DEFAULT_CHAT_MODEL})")
    p.add_argument("--compare", metavar="A,B[,C]",
                   help="ask two or three models at once (comma-separated names; --model is then ignored); "
                        "sampling is the first model's recommended one unless given here, the same for all")
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
    if args.compare:
        return run_compare(args)
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


# ---------------------------------------------------------------- chat --compare


def remote_stream(socket_path):
    """A compare.Source over the engine's control socket: one `chat` call per answer, run in its own thread,
    so the engine receives them together. (Cancel is not passed on: the connection closes when we exit.)"""
    def stream(model, messages, params, backend, cancel):
        events: queue.Queue = queue.Queue()

        def on_event(tokens, message: str) -> None:
            event = json.loads(message)
            events.put(TokenEvent(text=event["text"], queued=event["queued"]))

        def call() -> None:
            try:
                result = control.call(socket_path, "chat", progress=on_event, model=model, messages=messages,
                                      params=params.to_dict(), backend=backend)
                known = set(TokenEvent.__dataclass_fields__)
                events.put(TokenEvent(**{k: v for k, v in result["stats"].items() if k in known}, done=True))
            except Exception as exc:   # raised in the reading thread, where the comparison records it
                events.put(exc)

        threading.Thread(target=call, daemon=True, name=f"llmos-compare-{model}").start()
        while True:
            item = events.get()
            if isinstance(item, Exception):
                raise item
            yield item
            if item.done:
                return
    return stream


def run_compare(args) -> int:
    settings = Settings.from_env()
    store = Store(settings.db_path)
    catalog = Catalog(store)
    models = compare.check_request(catalog, args.compare.split(","), args.prompt)
    params = params_from_args(args, catalog.get(models[0]).sampling)
    ensure_server(settings)
    comparison = compare.Comparison(models, args.prompt, params, args.system, remote_stream(settings.home / "engine.sock"),
                                    Comparisons(store), [args.backend] * len(models), actor=acting_user(args, store))
    with comparison.running() as updates:
        for answer in updates:
            if answer.ended and not args.json:
                print(f"=== {answer.model}", flush=True)
                if answer.error:
                    print(f"error: {answer.error}", file=sys.stderr)
                else:
                    print(answer.text, flush=True)
                    print(f"[{compare_figures(answer.stats())}]", file=sys.stderr, flush=True)
    if args.json:
        print_json({"comparison": comparison.saved_id, "prompt": args.prompt, "params": params.to_dict(),
                    "answers": [a.record() for a in comparison.answers]})
    else:
        print(f"saved as comparison {comparison.saved_id}", file=sys.stderr)
    return 1 if any(a.error for a in comparison.answers) else 0


def compare_figures(stats: dict) -> str:
    return (f"{stats['tokens']} tokens, first token {stats['ttft_s']} s, {stats['tokens_per_s']} tokens/s, "
            f"{stats['backend']}, {stats['finish_reason']}")
