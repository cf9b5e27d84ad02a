"""`models`: list the catalog, pull (download or convert), export (a fine-tune to GGUF), load, unload, ps;
estimate (memory and speed here, before a download) and search (the hub, with those predictions).

load/unload/ps act on the engine that holds models (the web app's, or `serve`). With none running,
`load` starts a background engine that exits once it has been idle for the keep-alive.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import asdict

from .. import control
from ..engine import Engine
from ..errors import LLMOSError
from ..present import format_bytes
from ..settings import Settings
from ..usecases.models import (estimate_model, list_catalog, model_tiers, publish_model, pull_and_register,
                               search_models)
from . import acting_user, print_json, progress_printer, table


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="the model catalog and the models in memory")
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("list", help="every model in the catalog")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("pull", help="download a hub id, or convert a GGUF/embedded model, and register it")
    p.add_argument("ref", help="catalog name, Hugging Face id (owner/name), local folder or .gguf file")
    p.add_argument("--name", help="catalog name to register it under")
    p.add_argument("--task", choices=["causal-lm", "seq2seq", "sentence-embedding"])
    p.add_argument("--trust-remote-code", action="store_true", help="run the model's own code (only if you trust it)")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("export", help="write a fine-tuned model as a GGUF that llama.cpp serves, and register it")
    p.add_argument("name", help="a fine-tuned model of the catalog")
    p.add_argument("--quant", default="q8_0", choices=["q8_0", "q4", "f16"],
                   help="the GGUF form: q8_0 (default; perplexity within 2%% of fp32), q4 (the base GGUF's own "
                        "4-bit type: smaller, within 5%%), f16")
    p.add_argument("--json", action="store_true")
    for action, text in (("load", "load a model into the engine"), ("unload", "unload a model from the engine")):
        p = sub.add_parser(action, help=text)
        p.add_argument("name")
        p.add_argument("--backend", default=None, help="transformers (default) or llamacpp")
        p.add_argument("--json", action="store_true")
    p = sub.add_parser("publish", help="an admin shares a registered model with every user (--withdraw: takes it back)")
    p.add_argument("name")
    p.add_argument("--withdraw", action="store_true", help="make it its owner's alone again")
    p = sub.add_parser("ps", help="models in memory, with estimated and measured bytes")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("estimate", help="memory, tokens/s and time to first token here, before any download")
    p.add_argument("ref", help="catalog name or Hugging Face id (owner/name)")
    p.add_argument("--context", type=int, default=4096, help="context length the KV cache is sized for")
    p.add_argument("--quant", default="", help="one form only: a GGUF quantization (Q4_K_M, Q8_0...) or fp32/bf16")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("search", help="search the Hugging Face hub, with a prediction for each form "
                                      "(no query: the tiers, well-known models that run well here)")
    p.add_argument("query", nargs="?", default="")
    p.add_argument("--task", default="", help="a hub pipeline tag, e.g. text-generation")
    p.add_argument("--limit", type=int, default=10)
    p.add_argument("--context", type=int, default=4096)
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("tiers", help="well-known models that run well on this machine's class, predicted here")
    p.add_argument("--class", dest="machine_class", default="", choices=["", "cpu", "mid-gpu", "big-gpu"],
                   help="another class than this machine's (its GPU is a representative one)")
    p.add_argument("--context", type=int, default=4096)
    p.add_argument("--json", action="store_true")
    parser.set_defaults(func=run)


def run(args) -> int:
    settings = Settings.from_env()
    return {"list": _list, "pull": _pull, "export": _export, "load": _load, "unload": _unload, "ps": _ps, "publish": _publish,
            "estimate": _estimate, "search": _search, "tiers": _tiers}[args.action](args, settings)


def _socket(settings: Settings):
    return settings.home / "engine.sock"


def _list(args, settings: Settings) -> int:
    engine = Engine(settings, primary=False, start_threads=False)
    try:
        rows = [asdict(entry) for entry in list_catalog(engine, acting_user(args, engine.store))]
    finally:
        engine.close()
    if args.json:
        print_json(rows)
    else:
        print(table(rows, ["name", "source", "task", "chat", "ready", "sharing", "location"]))
    return 0


def _publish(args, settings: Settings) -> int:
    engine = Engine(settings, primary=False, start_threads=False)
    try:
        publish_model(engine, acting_user(args, engine.store), args.name, shared=not args.withdraw)
    finally:
        engine.close()
    print(f"{args.name}: {'no longer published' if args.withdraw else 'published to every user'}")
    return 0


def _pull(args, settings: Settings) -> int:
    engine = Engine(settings, primary=False, start_threads=False)
    try:
        pulled = pull_and_register(engine, acting_user(args, engine.store), args.ref, name=args.name or "", task=args.task,
                                   trust_remote_code=args.trust_remote_code, progress=progress_printer(f"{args.ref} "))
        result = pulled.to_dict()
    finally:
        engine.close()
    print_json(result) if args.json else print(f"{result['name']}: ready in {result['folder']}")
    return 0


def _export(args, settings: Settings) -> int:
    from ..training.export import export_model

    engine = Engine(settings, primary=False, start_threads=False)
    try:
        result = export_model(args.name, engine.catalog, settings, args.quant,
                              None if args.json else progress_printer(f"{args.name} "))
    finally:
        engine.close()
    if args.json:
        print_json(result)
    else:
        print(f"{args.name}: {result['gguf']} ({format_bytes(result['bytes'])}, {result['seconds']:.0f} s); "
              "chat with backend auto now serves it on llama.cpp")
    return 0


def ensure_server(settings: Settings, timeout: float = 30.0) -> None:
    """Start a background engine for this data folder if none answers."""
    path = _socket(settings)
    if control.is_up(path):
        return
    settings.home.mkdir(parents=True, exist_ok=True)
    log = open(settings.home / "engine.log", "ab")
    subprocess.Popen([sys.executable, "-m", "llmos_core", "serve", "--idle-exit", str(settings.keep_alive_s)],
                     stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
                     env={**os.environ, "LLMOS_HOME": str(settings.home)})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if control.is_up(path):
            return
        time.sleep(0.2)
    raise LLMOSError("the background engine did not start", f"see {settings.home / 'engine.log'}")


def _load(args, settings: Settings) -> int:
    ensure_server(settings)
    status = control.call(_socket(settings), "load", progress=None if args.json else progress_printer(f"{args.name} "),
                          name=args.name, backend=args.backend or "transformers")
    if args.json:
        print_json(status)
    else:
        print(f"\n{status['name']} loaded ({status['backend']}): measured {format_bytes(status['measured_bytes'])}, "
              f"estimated {format_bytes(status['estimated_bytes'])}, in {status['load_seconds']} s")
    return 0


def _unload(args, settings: Settings) -> int:
    try:
        result = control.call(_socket(settings), "unload", name=args.name, backend=args.backend)
    except ConnectionError:
        raise LLMOSError("no LLM OS engine is running, so nothing is loaded",
                         "start the app or `python -m llmos_core serve`")
    print_json(result) if args.json else print(f"unloaded {args.name}")
    return 0


def _ps(args, settings: Settings) -> int:
    try:
        rows = control.call(_socket(settings), "ps", timeout=10)
    except (ConnectionError, OSError):
        rows = []
        if not args.json:
            print("no LLM OS engine is running (start the app or `python -m llmos_core serve`)", file=sys.stderr)
    if args.json:
        print_json(rows)
    else:
        for row in rows:
            row["measured"] = format_bytes(row["measured_bytes"])
            row["estimated"] = format_bytes(row["estimated_bytes"])
            row["cache"] = format_bytes(row.get("working_bytes") or 0)
        print(table(rows, ["name", "backend", "measured", "estimated", "cache", "in_use", "unloads_in_s", "device"]))
    return 0


def _prediction_rows(predictions: list[dict]) -> list[dict]:
    return [{"form": f"{p['runner']} {p['quant']}", "memory": format_bytes(p["memory_bytes"]),
             "decode tok/s": f"{p['decode_tokens_per_s']:.1f}", "prompt tok/s": f"{p['prompt_tokens_per_s']:.0f}",
             "ttft (1k)": f"{p['ttft_s']:.1f} s", "download": _download(p), "badge": p["badge"]} for p in predictions]


def _download(p: dict) -> str:
    if not p["download_bytes"]:
        return "on disk"
    seconds = p["download_s"]
    return format_bytes(p["download_bytes"]) + (f", {seconds:.0f} s" if seconds is not None else "")


def _estimate(args, settings: Settings) -> int:
    engine = Engine(settings, primary=False, start_threads=False)
    try:
        result = estimate_model(engine, args.ref, context=args.context, quant=args.quant).to_dict()
    finally:
        engine.close()
    if args.json:
        print_json(result)
        return 0
    shape = result["shape"]
    print(f"{result['model']}: {shape['parameters'] / 1e6:.0f}M parameters, {shape['architecture']}, "
          f"context {args.context}")
    print(table(_prediction_rows(result["forms"]), ["form", "memory", "decode tok/s", "prompt tok/s", "ttft (1k)",
                                                   "download", "badge"]))
    learned = result["calibration"]["learned_from_replies"]
    print(f"recommended: {result['recommended'] or 'none fits'}; "
          + (f"corrected by {learned} replies measured here" if learned else "first estimate (nothing measured yet)"))
    return 0


def _tiers(args, settings: Settings) -> int:
    engine = Engine(settings, primary=False, start_threads=False)
    try:
        tier = model_tiers(engine, getattr(args, "machine_class", ""), context=args.context)
    finally:
        engine.close()
    if args.json:
        print_json(tier.to_dict())
        return 0
    where = "a reference GPU of this class, not this machine's" if tier.reference else "this machine"
    print(f"class {tier.machine_class} ({where}), context {args.context}: predicted here, before any download")
    if tier.none_well:
        print("none of the curated models runs well here now: the smallest that fit, and how slowly")
    rows = [{"model": p["model"], **row} for p, row in zip(tier.to_dict()["models"],
                                                          _prediction_rows(tier.to_dict()["models"]))]
    print(table(rows, ["model", "form", "memory", "decode tok/s", "ttft (1k)", "badge"]) if rows
          else "no curated model runs well here")
    print("then: python -m llmos_core models estimate HUB_ID for every form, or pull it")
    return 0


def _search(args, settings: Settings) -> int:
    if not args.query.strip():
        args.machine_class = ""
        return _tiers(args, settings)
    engine = Engine(settings, primary=False, start_threads=False)
    try:
        found = search_models(engine, acting_user(args, engine.store), args.query, task=args.task, context=args.context,
                              limit=args.limit)
    finally:
        engine.close()
    if args.json:
        print_json({"offline": found.offline, "models": found.models, "local": found.local})
        return 0
    if found.offline:
        print(found.offline, file=sys.stderr)
        print(table(found.local, ["name", "source", "task", "ready"]))
        return 0
    for model in found.models:
        runs = ", ".join(f"{r}: {why or 'yes'}" for r, why in model["runners"].items())
        print(f"\n{model['repo_id']}  {model['parameters'] / 1e6:.0f}M {model['architecture']}  licence "
              f"{model['license'] or '?'}{'  GATED' if model['gated'] else ''}  {model['downloads']} downloads, "
              f"{model['likes']} likes\n  runs on {runs}")
        if model["predictions"]:
            print(table(_prediction_rows(model["predictions"]),
                        ["form", "memory", "decode tok/s", "ttft (1k)", "download", "badge"]))
    if not found.models:
        print("no model found")
    return 0
