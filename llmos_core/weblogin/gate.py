"""The gate in front of the web app: an ASGI middleware that app.py hands to `st.App`, so it sees every
request before Streamlit does (pages, static files, the websocket, uploads, components).

1. The Host header must name this server: loopback's names or LLMOS_PUBLIC_HOST (access.allowed_hosts).
   A web page that rebinds its own name to 127.0.0.1 sends its own name, and is refused (DNS rebinding).
2. Where a login is asked (access.login_needed: beyond loopback, once a user exists, or with
   LLMOS_WEB_PASSWORD), every request needs the login cookie (weblogin.WebLogins): without it a page is
   redirected to the login page, anything else is refused before its body is read, and the websocket is
   closed before a session is made. So a visitor who has not logged in can make the server keep nothing.
   An upload, or a websocket resuming a session, must come with the login that session was opened under.
3. Its own paths, under /_llmos/: the login page and its form (each try through Accounts.authenticate,
   one at a time per address and per account, so parallel tries cannot outrun the back-off), logout, and
   the Monitor's live feed, fetched with a short-lived token of one session and its login.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable
from urllib.parse import parse_qs, quote, urlsplit

from .. import access
from ..accounts import LoginRefused, LoginThrottled
from ..errors import LLMOSError
from ..settings import Settings
from . import COOKIE, FEED_PATH, LOGIN_PATH, LOGOUT_PATH, WebLogins, logins
from .page import login_page, refusal_page

LOGIN, LOGOUT, FEED = LOGIN_PATH, LOGOUT_PATH, FEED_PATH
HEALTH = ("/_stcore/health", "/healthz")
UPLOAD = "/_stcore/upload_file/"
MAX_FORM = 8 * 1024           # a login form is a name and a password: a bigger body is not one
MAX_CHECKS = 4                # password checks (argon2, ~50 ms of a core each) running at once, all visitors
USERS_TTL_S = 2.0             # how long "does any user exist" is reused (it is asked for every request)
log = logging.getLogger("llmos.weblogin")


class WebGate:
    def __init__(self, app, *, engine: Callable, address: Callable[[], str | None],
                 feed: Callable[[], bytes | None] = lambda: None,
                 session_alive: Callable[[str], bool] = lambda session_id: True,
                 base_path: str = "", book: WebLogins | None = None, settings: Settings | None = None):
        self.app, self._make_engine, self.address, self.feed = app, engine, address, feed
        self.session_alive = session_alive
        self.base = "/" + base_path.strip("/") if base_path.strip("/") else ""
        self.book = book or logins()
        self.allowed = access.allowed_hosts(settings or Settings.from_env())
        self._engine = None
        self._users: tuple[float, bool] = (-1e9, False)
        self._checking: set[str] = set()     # addresses and accounts with a try under way

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        request = Request(scope)
        if not access.host_allowed(request.header("host"), self.allowed):
            log.warning("refused a request for host %r from %s", request.header("host")[:100], request.address)
            return await refuse(request, send, 421, "This server does not answer to that host name. Set "
                                                    "LLMOS_PUBLIC_HOST to the name visitors use.")
        path = request.path[len(self.base):] if self.base and request.path.startswith(self.base) else request.path
        if path in HEALTH:
            return await self.app(scope, receive, send)
        needed, reason = await self._policy()
        if reason:
            return await refuse(request, send, 503, reason)
        login = self.book.check(request.cookie(COOKIE)) if needed else None
        if path == LOGIN:
            return await (self._login_form(request, receive, send) if request.method == "POST"
                          else self._login_page(request, send, needed, login))
        if path == LOGOUT and request.method == "POST":
            return await self._logout(request, send)
        if path == FEED:
            return await self._feed(request, send, login.id if login else "", needed and login is None)
        if not needed:
            return await self.app(scope, receive, send)
        if login is None:
            if scope["type"] == "http" and request.method in ("GET", "HEAD") and not path.startswith("/_stcore/"):
                return await redirect(send, self._login_url(request.path_with_query), clear=bool(request.cookie(COOKIE)))
            return await refuse(request, send, 401, "Log in first.")
        session = self._session_of(request, path)
        if session and self.book.session_login(session) not in (None, login.id):
            log.warning("refused %s for a session of another login (%s)", path[:60], request.address)
            return await refuse(request, send, 403, "That session belongs to another login.")
        if path.startswith(UPLOAD) and request.method in ("PUT", "POST") and self.book.session_login(session) is None:
            return await refuse(request, send, 403, "Uploads go to a session this login has opened.")
        return await self.app(scope, receive, send)

    # ---- policy ----
    async def engine(self):
        if self._engine is None:   # made once, off the event loop: the script shares it (engine.get_engine)
            self._engine = await asyncio.to_thread(self._make_engine)
        return self._engine

    async def _policy(self) -> tuple[bool, str | None]:
        """(is a login asked, why the app must not serve at all)."""
        loop = asyncio.get_running_loop()
        at, users = self._users
        if loop.time() - at > USERS_TTL_S:
            engine = await self.engine()
            users = await asyncio.to_thread(engine.accounts.any_users)
            self._users = (loop.time(), users)
        address = self.address()
        return access.login_needed(address, users), access.refusal(address, users)

    def _login_url(self, next_path: str = "/") -> str:
        return f"{self.base}{LOGIN}?next={quote(next_path, safe='/')}"

    def _session_of(self, request: Request, path: str) -> str | None:
        """The Streamlit session a request names: a resumed websocket's, an upload's."""
        if request.scope["type"] == "websocket":
            parts = [p.strip() for p in request.header("sec-websocket-protocol").split(",")]
            return parts[2] if len(parts) >= 3 and parts[2] else None
        if path.startswith(UPLOAD):
            return path[len(UPLOAD):].split("/", 1)[0] or None
        return None

    # ---- its own pages ----
    async def _login_page(self, request, send, needed: bool, login) -> None:
        next_path = safe_next(request.query("next"), self.base)
        if not needed or login is not None:
            return await redirect(send, next_path)
        await respond(send, 200, login_page(self._login_url(next_path), next_path), "text/html; charset=utf-8",
                      clear=bool(request.cookie(COOKIE)))

    async def _login_form(self, request, receive, send) -> None:
        if not same_origin(request):
            return await refuse(request, send, 403, "A login must come from this site's own page.")
        body = await read_body(request, receive, MAX_FORM)
        if body is None:
            return await refuse(request, send, 413, "That is not a login form.")
        form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=8)
        name, password = (form.get(k, [""])[0] for k in ("name", "password"))
        next_path = safe_next(form.get("next", ["/"])[0], self.base)
        page = self._login_url(next_path)
        keys = {f"address:{request.address}", f"user:{name[:64]}"}
        if keys & self._checking or len(self._checking) >= 2 * MAX_CHECKS:
            return await respond(send, 429, login_page(page, next_path, "Another login is being checked; try again "
                                                       "in a moment.", name), "text/html; charset=utf-8",
                                 extra=[(b"retry-after", b"1")])
        self._checking |= keys
        try:
            engine = await self.engine()
            user = await asyncio.to_thread(engine.accounts.authenticate, name, password, address=request.address)
        except LoginThrottled as exc:
            log.warning("login for %r from %s throttled (%.0f s)", name[:64], request.address, exc.retry_after_s)
            return await respond(send, 429, login_page(page, next_path, exc.message, name), "text/html; charset=utf-8",
                                 extra=[(b"retry-after", str(max(1, round(exc.retry_after_s))).encode())])
        except LoginRefused:
            log.warning("failed login for %r from %s", name[:64], request.address)
            return await respond(send, 401, login_page(page, next_path, "Wrong name or password.", name),
                                 "text/html; charset=utf-8")
        except LLMOSError as exc:
            return await respond(send, 400, login_page(page, next_path, exc.message, name), "text/html; charset=utf-8")
        finally:
            self._checking -= keys
        login, cookie = self.book.open(user.id, user.name)
        log.info("%s logged in from %s", user.name, request.address)
        secure = "; Secure" if request.scope.get("scheme") in ("https", "wss") else ""
        await redirect(send, next_path, cookie=f"{COOKIE}={cookie}; Max-Age={self.book.max_age(login)}; Path=/; "
                                               f"HttpOnly; SameSite=Lax{secure}")

    async def _logout(self, request, send) -> None:
        if not same_origin(request):
            return await refuse(request, send, 403, "A logout must come from this site's own page.")
        login = self.book.check(request.cookie(COOKIE))
        if login is not None:
            self.book.close(login.id)
            log.info("%s logged out", login.user_name)
        await redirect(send, self._login_url(), clear=True)

    async def _feed(self, request, send, login_id: str, refused: bool) -> None:
        held = None if refused else self.book.check_feed_token(request.query("t"), login_id)
        data = self.feed() if held is not None and self.session_alive(held.session_id) else None
        if data is None:
            return await respond(send, 403, b'{"error": "feed token expired"}', "application/json")
        await respond(send, 200, data, "application/json", extra=[(b"cache-control", b"no-store")])


# ---------------------------------------------------------------- plain ASGI, no framework

class Request:
    def __init__(self, scope):
        self.scope = scope
        self.method = scope.get("method", "GET")
        self.path = scope.get("path", "/")
        raw_query = scope.get("query_string", b"").decode("latin-1")
        self.path_with_query = self.path + (f"?{raw_query}" if raw_query else "")
        self._query = parse_qs(raw_query, max_num_fields=20)
        self._headers: dict[str, str] = {}
        for key, value in scope.get("headers", []):
            self._headers.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
        self.address = (scope.get("client") or ("?", 0))[0]

    def header(self, name: str) -> str:
        return self._headers.get(name, "")

    def query(self, name: str) -> str:
        return self._query.get(name, [""])[0]

    def cookie(self, name: str) -> str | None:
        for part in self.header("cookie").split(";"):
            key, _, value = part.strip().partition("=")
            if key == name:
                return value
        return None


def same_origin(request: Request) -> bool:
    """A browser's form post says where it comes from; another site's page is refused (no Origin: a script)."""
    origin = request.header("origin")
    return not origin or urlsplit(origin).netloc.lower() == request.header("host").lower()


def safe_next(path: str, base: str) -> str:
    """Where to go after the login: a path on this server only, never another site."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path or any(c < " " for c in path):
        return base + "/"
    return path[:500]


async def read_body(request: Request, receive, limit: int) -> bytes | None:
    """The body, or None past `limit` bytes (said by Content-Length or found while reading)."""
    length = request.header("content-length")
    if length and (not length.isdigit() or int(length) > limit):
        return None
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


CLEAR = f"{COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax"


async def respond(send, status: int, body: bytes, content_type: str, *, clear: bool = False,
                  cookie: str | None = None, extra: list | None = None) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()),
               (b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store"), *(extra or [])]
    if cookie or clear:
        headers.append((b"set-cookie", (cookie or CLEAR).encode("latin-1")))
    if content_type.startswith("text/html"):
        headers += [(b"x-frame-options", b"DENY"),
                    (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def redirect(send, location: str, *, clear: bool = False, cookie: str | None = None) -> None:
    await respond(send, 303, b"", "text/plain", clear=clear, cookie=cookie,
                  extra=[(b"location", location.encode("latin-1", "replace"))])


async def refuse(request: Request, send, status: int, message: str) -> None:
    """An HTTP answer, or a websocket closed before it is accepted (the client sees 403)."""
    if request.scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    if request.header("accept").startswith("text/html") and request.method == "GET":
        return await respond(send, status, refusal_page(message), "text/html; charset=utf-8")
    await respond(send, status, message.encode(), "text/plain; charset=utf-8")
