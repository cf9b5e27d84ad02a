"""Who sends an API request: its key's user (`Accounts.user_for_key`), put in the request's state.

The key of LLMOS_API_KEY (or the server's own `api_key`) is an admin's. With no user made and no key set,
every request is the local admin's, whatever key it sends, as before accounts. Once any user exists, every request
needs a key, from loopback too: a 401 without one, or with one nobody holds.
"""
from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from fastapi import Request
from fastapi.responses import JSONResponse

from ..accounts import LOCAL_ADMIN, User
from .errors import Unauthorized, describe

if TYPE_CHECKING:
    from ..engine import Engine

OPEN_PATHS = ("/health", "/docs", "/openapi.json", "/docs/oauth2-redirect")


class UserAuth:
    """Plain ASGI middleware (Starlette's BaseHTTPMiddleware would add a hop to every streamed chunk and
    wrap `receive`, which the disconnect watch reads)."""

    def __init__(self, app, engine: "Engine", api_key: str | None = None):
        self.app, self.engine, self.api_key = app, engine, (api_key or "").encode()

    def user_of(self, headers: dict) -> User | None:
        if not self.api_key and not self.engine.accounts.any_users():
            return LOCAL_ADMIN      # the single-user start: no key asked (whatever a client sends), as before
        given = headers.get(b"authorization", b"")
        scheme, _, token = given.partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token:
            return None
        # constant-time: a wrong key takes as long to refuse whatever prefix it shares with the right one
        if self.api_key and hmac.compare_digest(token, self.api_key):
            return self.engine.accounts.first_admin() or LOCAL_ADMIN
        return self.engine.accounts.user_for_key(token.decode("utf-8", "replace"))

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            user = self.user_of(dict(scope["headers"]))
            if user is None:
                status, body, headers = describe(Unauthorized("missing or wrong API key"))
                await JSONResponse(body, status_code=status, headers=headers)(scope, receive, send)
                return
            scope.setdefault("state", {})["llmos_user"] = user
        await self.app(scope, receive, send)


def request_user(request: Request) -> User:
    """The user UserAuth found for this request (routes behind it always have one)."""
    return request.state.llmos_user
