"""`serve`: run the engine headless (models, control socket, scheduler) until stopped."""
from __future__ import annotations

import signal
import sys
import threading
import time

from .. import control
from ..api.server import check_listen, start_api, start_configured_api
from ..engine import Engine
from ..errors import LLMOSError
from ..settings import Settings


def register(subparsers) -> None:
    parser = subparsers.add_parser("serve", help="run the engine without the web app (holds models, runs jobs)")
    parser.add_argument("--idle-exit", type=float, default=None, metavar="S",
                        help="exit after S seconds with nothing loaded and nothing running")
    parser.add_argument("--stop", action="store_true",
                        help="stop the engine serving this data folder (one started by serve or by the CLI)")
    parser.add_argument("--api", action="store_true",
                        help="also serve the OpenAI-compatible API and /metrics over HTTP (see README)")
    parser.add_argument("--host", default=None,
                        help="address the API listens on (default 127.0.0.1, LLMOS_API_HOST); beyond loopback "
                             "LLMOS_API_KEY must be set")
    parser.add_argument("--port", type=int, default=None,
                        help="port of the API (default 8000, LLMOS_API_PORT; 0 picks a free one)")
    parser.set_defaults(func=run)


def run(args) -> int:
    settings = Settings.from_env()
    if args.stop:
        return _stop(settings)
    want_api = args.api or args.host is not None or args.port is not None
    port = args.port if args.port is not None else settings.api_port
    if want_api:
        check_listen(args.host or settings.api_host, settings.api_key)   # refuse before loading anything
    engine = Engine(settings)
    if not engine.is_primary:
        engine.close()
        raise LLMOSError(f"another LLM OS engine (pid {engine.primary_pid()}) already serves {engine.home}",
                         "use that one, or stop it first")
    if want_api:   # the API sits on the engine: this entry starts it (the engine never does)
        try:
            start_api(engine, args.host, port)
        except LLMOSError:
            engine.close()
            raise
    else:
        start_configured_api(engine)   # LLMOS_API_PORT alone: served too; if it cannot start, the engine runs
    if engine.api is not None:
        print(f"OpenAI-compatible API on {engine.api.url}/v1 (metrics: {engine.api.url}/metrics)"
              + ("; API key required" if settings.api_key else ""), file=sys.stderr, flush=True)
    elif engine.api_error:
        print(f"warning: the API did not start: {engine.api_error}", file=sys.stderr, flush=True)
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
