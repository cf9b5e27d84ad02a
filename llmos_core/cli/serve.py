"""`serve`: run the engine headless (models, control socket, scheduler) until stopped."""
from __future__ import annotations

import signal
import sys
import threading
import time

from ..engine import Engine
from ..errors import LLMOSError
from ..settings import Settings


def register(subparsers) -> None:
    parser = subparsers.add_parser("serve", help="run the engine without the web app (holds models, runs jobs)")
    parser.add_argument("--idle-exit", type=float, default=None, metavar="S",
                        help="exit after S seconds with nothing loaded and nothing running")
    parser.set_defaults(func=run)


def run(args) -> int:
    engine = Engine(Settings.from_env())
    if not engine.is_primary:
        raise LLMOSError(f"another LLM OS engine (pid {engine.primary_pid()}) already serves {engine.home}",
                         "use that one, or stop it first")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"LLM OS engine serving {engine.home} (pid {engine.status()['pid']})", file=sys.stderr, flush=True)
    idle_since = time.monotonic()
    while not stop.wait(1.0):
        if args.idle_exit is None:
            continue
        if not engine.is_idle():
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since >= args.idle_exit:
            print("idle: exiting", file=sys.stderr)
            break
    engine.close()
    return 0
