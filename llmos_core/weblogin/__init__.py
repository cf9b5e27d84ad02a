"""The web app's logins: who a browser is, bound to a cookie that browser alone holds.

A login is made by the gate (gate.py) when a name and password pass `Accounts.authenticate`; the browser
gets it as a signed, HttpOnly, SameSite=Lax cookie with an expiry, and every request and every script run
checks it here. The session id Streamlit keeps in the page is no login: a websocket or an upload that comes
without the cookie of the login its session was opened under is refused. Logging out (or an admin removing
the user, or setting a new password) closes the login at once, whatever copies of the cookie exist.

Kept in memory, one book per process (`logins()`): the web app is one process, and a restart asks everyone
to log in again (its signing key is new too). Bounded: at most MAX_LOGINS open logins, oldest dropped.
  gate.py   the ASGI middleware in front of Streamlit: Host check, login page, cookie on every request
  page.py   the login page's HTML
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field

COOKIE = "llmos_login"
LOGIN_PATH, LOGOUT_PATH, FEED_PATH = "/_llmos/login", "/_llmos/logout", "/_llmos/live_feed"   # the gate's own
LOGIN_S = 12 * 3600        # a login lasts 12 hours, then the browser logs in again
FEED_TOKEN_S = 120         # the Monitor's live feed token: renewed by the page's chart when it runs out
MAX_LOGINS = 10_000
MAX_FEED_TOKENS = 10_000
MAX_SESSIONS = 256          # per login: a page reloaded all day does not grow the book


@dataclass
class Login:
    id: str
    user_id: int
    user_name: str
    expires: float
    sessions: dict[str, None] = field(default_factory=dict)   # Streamlit sessions opened under it, oldest first


@dataclass(frozen=True)
class FeedToken:
    session_id: str
    login_id: str          # "" where no login is asked (loopback, no user)
    expires: float


class WebLogins:
    """Open logins, their cookies, the Streamlit sessions bound to them, and the live feed's tokens.
    Thread-safe: the gate runs on the server's event loop, the script runs in threads."""

    def __init__(self, login_s: float = LOGIN_S, feed_token_s: float = FEED_TOKEN_S, clock=time.time):
        self.login_s, self.feed_token_s, self.clock = login_s, feed_token_s, clock
        self._key = secrets.token_bytes(32)
        self._logins: dict[str, Login] = {}
        self._session_login: dict[str, str] = {}
        self._feed: dict[str, FeedToken] = {}
        self._lock = threading.Lock()

    # ---- logins and their cookies ----
    def open(self, user_id: int, user_name: str) -> tuple[Login, str]:
        """A new login for the user; returns it and the cookie's value (id, expiry, signature)."""
        now = self.clock()
        login = Login(secrets.token_urlsafe(24), int(user_id), user_name, now + self.login_s)
        with self._lock:
            self._forget_expired(now)
            if len(self._logins) >= MAX_LOGINS:
                self._close(min(self._logins.values(), key=lambda x: x.expires).id)
            self._logins[login.id] = login
        return login, self._sign(login)

    def check(self, cookie: str | None) -> Login | None:
        """The open login this cookie stands for, or None (missing, forged, expired or closed)."""
        if not cookie or len(cookie) > 200:
            return None
        login_id, _, rest = cookie.partition(".")
        expires, _, signature = rest.partition(".")
        expected = self._signature(login_id, expires)
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            return None
        with self._lock:
            login = self._logins.get(login_id)
            if login is None or login.expires <= self.clock():
                return None
            return login

    def close(self, login_id: str) -> None:
        """Log out: the login, its sessions and its feed tokens are gone at once."""
        with self._lock:
            self._close(login_id)

    def close_user(self, user_id: int) -> int:
        """Close every login of a user (removed, or given a new password); returns how many."""
        with self._lock:
            ids = [x.id for x in self._logins.values() if x.user_id == int(user_id)]
            for login_id in ids:
                self._close(login_id)
        return len(ids)

    def max_age(self, login: Login) -> int:
        return max(0, int(login.expires - self.clock()))

    # ---- Streamlit sessions opened under a login ----
    def bind(self, session_id: str, login_id: str) -> None:
        """The script ran this session under this login: its uploads and reconnections need this login."""
        with self._lock:
            login = self._logins.get(login_id)
            if login is not None and self._session_login.get(session_id) in (None, login_id):
                self._session_login[session_id] = login_id
                login.sessions[session_id] = None
                if len(login.sessions) > MAX_SESSIONS:
                    oldest = next(iter(login.sessions))
                    del login.sessions[oldest]
                    self._session_login.pop(oldest, None)

    def session_login(self, session_id: str) -> str | None:
        """The login a session was opened under; None for a session no login has run yet."""
        with self._lock:
            return self._session_login.get(session_id)

    # ---- the Monitor's live feed ----
    def feed_token(self, session_id: str, login_id: str = "") -> str:
        """A token for this session's chart to fetch the live feed with: short-lived, and valid only while
        its login is open. The session's current token while it has more than half its life left."""
        now = self.clock()
        with self._lock:
            for token, held in self._feed.items():
                if held.session_id == session_id and held.login_id == login_id and held.expires - now > self.feed_token_s / 2:
                    return token
            self._feed = {t: h for t, h in self._feed.items() if h.expires > now and h.session_id != session_id}
            if len(self._feed) >= MAX_FEED_TOKENS:
                self._feed.pop(min(self._feed, key=lambda t: self._feed[t].expires))
            token = secrets.token_urlsafe(24)
            self._feed[token] = FeedToken(session_id, login_id, now + self.feed_token_s)
            return token

    def check_feed_token(self, token: str | None, login_id: str = "") -> FeedToken | None:
        """The token's holder if it is current, its login still open and the same as the request's."""
        with self._lock:
            held = self._feed.get(token or "")
            if held is None or held.expires <= self.clock() or held.login_id != login_id:
                return None
            if held.login_id and held.login_id not in self._logins:
                return None
            return held

    # ---- inside ----
    def _signature(self, login_id: str, expires: str) -> str:
        return hmac.new(self._key, f"{login_id}.{expires}".encode(), hashlib.sha256).hexdigest()

    def _sign(self, login: Login) -> str:
        expires = str(int(login.expires))
        return f"{login.id}.{expires}.{self._signature(login.id, expires)}"

    def _close(self, login_id: str) -> None:
        login = self._logins.pop(login_id, None)
        if login is not None:
            for session_id in login.sessions:
                self._session_login.pop(session_id, None)
        self._feed = {t: h for t, h in self._feed.items() if h.login_id != login_id}

    def _forget_expired(self, now: float) -> None:
        for login_id in [x.id for x in self._logins.values() if x.expires <= now]:
            self._close(login_id)


_logins = WebLogins()


def logins() -> WebLogins:
    """The process's book of logins, shared by the gate and the pages."""
    return _logins
