"""The API server: uvicorn in a thread of the engine's process, so it shares the engine's models and queues.

MCP over streamable HTTP is served at /mcp by the same app (llmos_core/mcp/server.py), behind the same key.
Loopback by default. Listening on any other address needs an API key (LLMOS_API_KEY), or the server
refuses to start: a model server open to the network would let anyone use the machine's memory.
The socket is bound here, before uvicorn starts, so a taken port is an error with a hint, not a log line
in a thread, and port 0 picks a free port (the tests use that).
"""
from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from typing import TYPE_CHECKING

from ..errors import LLMOSError, SettingsError

if TYPE_CHECKING:
    from ..engine import Engine

log = logging.getLogger(__name__)
DEFAULT_PORT = 8000


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False   # a host name: it may resolve to anything


def check_listen(host: str, api_key: str | None) -> None:
    if not is_loopback(host) and not api_key:
        raise SettingsError(f"the API would listen on {host}, beyond this machine, without an API key",
                            "set LLMOS_API_KEY to a long random secret, or listen on 127.0.0.1")


class ApiServer:
    def __init__(self, engine: "Engine", host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 api_key: str | None = None):
        check_listen(host, api_key)
        self.engine, self.host, self.api_key = engine, host, api_key or None
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind((host, port))
        except OSError as exc:
            self._socket.close()
            raise LLMOSError(f"the API cannot listen on {host}:{port}: {exc.strerror or exc}",
                             "choose another port (--port or LLMOS_API_PORT), or stop what holds it") from exc
        self.port = self._socket.getsockname()[1]
        self._server = None
        self._thread: threading.Thread | None = None
        self.metrics = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 30.0) -> "ApiServer":
        import uvicorn

        from ..mcp.server import http_route
        from .guard import Guard
        from .metrics import ApiMetrics
        from .routes import build_app

        self.metrics = ApiMetrics(self.engine)
        app = build_app(self.engine, self.api_key, self.metrics)
        # MCP's streamable HTTP beside /v1, inside the same app, so the same key check guards it (auth.UserAuth)
        # and each MCP call acts as the key's user (mcp/server.py); its sessions run in a task group the
        # lifespan holds for as long as the server runs.
        routes, run_sessions = http_route(self.engine, self.host)
        app.router.routes.extend(routes)
        app.router.lifespan_context = lambda _app: run_sessions()
        # The guard (Host, body size) in front of everything, /mcp included; lifespan events pass through it.
        app = Guard(app, self.engine.settings, self.host)
        config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False,
                                timeout_graceful_shutdown=5)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name="llmos-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise LLMOSError(f"the API server did not start on {self.url}", "see the server's log")
            time.sleep(0.02)
        self.engine.store.add_event("api_start", "api", f"OpenAI-compatible API on {self.url}"
                                    + (" (API key required)" if self.api_key else ""))
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        self._socket.close()
        if self.metrics is not None:
            self.metrics.close()


def start_api(engine: "Engine", host: str | None = None, port: int | None = None) -> ApiServer:
    """Serve the API of `engine` from this process (from the settings unless host/port are given) and record
    it on the engine (`engine.api`, stopped by `engine.close()`). The process entries call this: `serve`
    and the web app's start (start_configured_api); the engine itself never starts the API."""
    settings = engine.settings
    if port is None:
        port = DEFAULT_PORT if settings.api_port is None else settings.api_port
    try:
        engine.api = ApiServer(engine, host or settings.api_host, port, settings.api_key).start()
        engine.api_error = ""
    except LLMOSError as exc:
        engine.api_error = str(exc)
        log.error("API not started: %s", exc)
        raise
    return engine.api


def start_configured_api(engine: "Engine") -> ApiServer | None:
    """The web app's start: serve the API when LLMOS_API_PORT is set and this process holds the data folder's
    engine (once; later calls return the running one). An API that cannot start leaves the app running:
    the reason is kept in engine.api_error, which the Models page shows."""
    if engine.api is not None or engine.api_error or not engine.is_primary or engine.settings.api_port is None:
        return engine.api
    try:
        return start_api(engine)
    except LLMOSError:
        return None
