"""The API's outer gate, a plain ASGI middleware around the whole app: what every request must pass before
any route (or the key check) sees it.

  - Host: only loopback's names, the address the server listens on and LLMOS_PUBLIC_HOST's names. A web page
    the user visits may point its own name at 127.0.0.1 (DNS rebinding) and then call the API as a same-origin
    page would; its requests carry its own name in Host, so they stop here with a 400.
  - Body: at most LLMOS_API_MAX_BODY_MB. A Content-Length over it is refused (413) before a byte is read; a
    body without one (chunked) is counted as it arrives and refused as soon as it passes the limit. Either
    way nothing is parsed: the routes get the body from here, whole and known to be small enough.
  - Error messages: the data folder is set for errors.scrub, so paths in them come out relative to it.
Answers are OpenAI's error object, as everywhere in the API.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..access import allowed_hosts, host_allowed, host_name
from ..settings import Settings
from .errors import data_home, error_body

BODYLESS = (b"GET", b"HEAD", b"OPTIONS", b"DELETE")


class Guard:
    def __init__(self, app, settings: Settings, listen_host: str = ""):
        self.app = app
        self.home = Path(settings.home)
        self.limit = int(settings.api_max_body_mb * 1024 * 1024)
        extra = host_name(listen_host if ":" not in listen_host else f"[{listen_host}]")
        wildcard = extra in ("", "0.0.0.0", "::")
        self.allowed = allowed_hosts(settings) | (frozenset() if wildcard else {extra})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        data_home.set(self.home)
        headers = dict(scope["headers"])
        if not host_allowed(headers.get(b"host", b"").decode("latin-1"), self.allowed):
            await send_json(send, 400, error_body(
                "this server does not answer to that host name (Host header); set LLMOS_PUBLIC_HOST to the "
                "name clients use to reach it", "invalid_request_error", "invalid_host"))
            return
        if scope["method"].encode() in BODYLESS and b"content-length" not in headers \
                and b"transfer-encoding" not in headers:
            await self.app(scope, receive, send)
            return
        declared = headers.get(b"content-length", b"")
        if declared.strip().isdigit() and int(declared) > self.limit:
            await self._too_large(send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return   # the client left before its body was whole: nothing to answer
            size += len(message.get("body", b""))
            if size > self.limit:
                await self._too_large(send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _too_large(self, send) -> None:
        megabytes = self.limit / 1024 / 1024
        await send_json(send, 413, error_body(
            f"the request body is over {megabytes:g} MB, the most this server reads; split the request, "
            "or raise LLMOS_API_MAX_BODY_MB", "invalid_request_error", "request_too_large"),
            extra=[(b"connection", b"close")])


async def send_json(send, status: int, body: dict, extra: list | None = None) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": data})


def _replay(body: bytes, receive):
    """A receive() that gives the body read already, then what the client sends next (its disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed():
        if pending:
            return pending.pop()
        return await receive()

    return replayed
