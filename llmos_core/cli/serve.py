"""`serve`: run the engine headless (models, control socket, scheduler) until stopped."""
from __future__ import annotations

import signal
import sys
import threading
import time

from .. import control
from ..engine import Engine
from ..errors import LLMOSError
from ..settings import Settings


def register(subparsers) -> None:
    parser = subparsers.add_parser("serve", help="run the engine without the web app (holds models, runs jobs)")
    parser.add_argument("--idle-exit", type=float, default=None, metavar="S",
                        help="exit after S seconds with nothing loaded and nothing running")
    parser.add_argument("--stop", action="store_true",
                        help="stop the engine serving this data folder (one started by serve or by the CLI)")
    parser.set_defaults(func=run)


def run(args) -> int:
    settings = Settings.from_env()
    if args.stop:
        return _stop(settings)
    engine = Engine(settings)
    if not engine.is_primary:
        raise LLMOSError(f"another LLM OS engine (pid {engine.primary_pid()}) already serves {engine.home}",
                         "use that one, or stop it first")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    engine.control.register("shutdown", lambda progress: stop.set() or {"stopping": engine.status()["pid"]})
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


def _stop(settings: Settings) -> int:
    """Ask the engine to exit; it unloads its models first. Jobs keep running in their own processes."""
    path = settings.home / "engine.sock"
    try:
        reply = control.call(path, "shutdown", timeout=10)
    except ConnectionError:
        print(f"no LLM OS engine is serving {settings.home}", file=sys.stderr)
        return 0
    except LLMOSError as exc:
        raise LLMOSError("the engine of this data folder is the web app's", "stop it where it runs (Ctrl-C)") from exc
    deadline = time.monotonic() + 30
    while control.is_up(path) and time.monotonic() < deadline:
        time.sleep(0.2)
    print(f"stopped the engine (pid {reply['stopping']})", file=sys.stderr)
    return 0
