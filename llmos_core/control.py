"""The engine's control socket: how the CLI reaches the engine that holds the models.

A Unix socket in the data folder, one JSON request per connection, answered by zero or more
`{"progress": ...}` lines and one final `{"ok": true, "result": ...}` or `{"ok": false, "error": ...}`.
Only the primary engine of a data folder (the one holding `engine.lock`) serves it.
"""
from __future__ import annotations

import json
import os
import socket
import socketserver
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

from .errors import LLMOSError

Handler = Callable[..., Any]   # handler(progress=callable, **args) -> JSON-able result


class ControlServer:
    def __init__(self, path: Path):
        self.path = path
        self.handlers: dict[str, Handler] = {}
        self._server: socketserver.ThreadingUnixStreamServer | None = None
        self._in_flight = 0           # requests being answered now (a load can outlast an idle timer)
        self._in_flight_lock = threading.Lock()

    def register(self, command: str, handler: Handler) -> None:
        self.handlers[command] = handler

    def start(self) -> None:
        handlers, server = self.handlers, self
        if self.path.exists():
            self.path.unlink()   # left by a crashed engine; we hold the engine lock, so it is stale

        class RequestHandler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                def send(obj: dict) -> None:
                    self.wfile.write((json.dumps(obj, default=str) + "\n").encode())
                    self.wfile.flush()

                try:
                    request = json.loads(self.rfile.readline())
                    handler = handlers.get(request.get("command", ""))
                    if handler is None:
                        send({"ok": False, "error": f"unknown command {request.get('command')!r}",
                              "type": "LLMOSError"})
                        return
                    with server._answering():
                        result = handler(progress=lambda f, m: send({"progress": f, "message": m}),
                                         **request.get("args", {}))
                    send({"ok": True, "result": result})
                except LLMOSError as exc:
                    send({"ok": False, "error": exc.message, "hint": exc.hint, "type": type(exc).__name__})
                except (BrokenPipeError, ConnectionResetError):
                    pass   # the client went away; nothing to tell it
                except Exception as exc:
                    send({"ok": False, "error": f"{type(exc).__name__}: {exc}", "type": "InternalError"})

        self._server = socketserver.ThreadingUnixStreamServer(str(self.path), RequestHandler)
        self._server.daemon_threads = True
        os.chmod(self.path, 0o600)   # the engine is the user's: nobody else may drive it
        threading.Thread(target=self._server.serve_forever, name="llmos-control", daemon=True).start()

    def busy(self) -> bool:
        """Whether a request is being answered now (the engine must not exit under it)."""
        with self._in_flight_lock:
            return self._in_flight > 0

    @contextmanager
    def _answering(self):
        with self._in_flight_lock:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass


def call(path: Path, command: str, progress: Callable[[float, str], None] | None = None,
         timeout: float | None = None, **args: Any) -> Any:
    """Send one command to the engine at `path`. Raises ConnectionError when no engine answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise ConnectionError(f"no engine answers at {path}") from exc
        sock.sendall((json.dumps({"command": command, "args": args}) + "\n").encode())
        reader = sock.makefile("r")
        for line in reader:
            reply = json.loads(line)
            if "progress" in reply:
                if progress:
                    progress(reply["progress"], reply["message"])
                continue
            if reply.get("ok"):
                return reply.get("result")
            error = LLMOSError(reply.get("error", "the engine failed"), reply.get("hint"))
            error.kind = reply.get("type")
            raise error
    raise ConnectionError("the engine closed the connection without an answer")


def is_up(path: Path) -> bool:
    try:
        call(path, "ping", timeout=2)
        return True
    except (ConnectionError, OSError):
        return False
