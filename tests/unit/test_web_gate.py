"""The gate in front of the web app (llmos_core/weblogin), driven in this process as plain ASGI: the Host
check, the login form and its cookie, the refusals before login, sessions bound to their login, logout,
and the live feed's token. tests/unit/test_web_gate_server.py checks the same against a real server."""
from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import pytest

from llmos_core.accounts import Accounts
from llmos_core.settings import Settings
from llmos_core.store import Store
from llmos_core.weblogin import COOKIE, WebLogins
from llmos_core.weblogin.gate import WebGate, safe_next


class Inner:
    """Streamlit, as far as the gate can tell: records what reached it."""

    def __init__(self):
        self.reached: list[tuple[str, str]] = []

    async def __call__(self, scope, receive, send):
        self.reached.append((scope["type"], scope["path"]))
        if scope["type"] == "websocket":
            await send({"type": "websocket.accept"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"streamlit"})


def run_async(coroutine):
    """asyncio.run in a thread of its own (the browser tests keep a loop running in the main thread)."""
    box = {}
    thread = threading.Thread(target=lambda: box.update(value=asyncio.run(coroutine)))
    thread.start()
    thread.join(60)
    return box["value"]


class Client:
    def __init__(self, gate: WebGate):
        self.gate = gate

    def request(self, method: str, path: str, *, host: str = "127.0.0.1:8501", body: bytes = b"",
                headers: dict | None = None, client: str = "127.0.0.1", ws: bool = False):
        path, _, query = path.partition("?")
        raw = [(b"host", host.encode())] + [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        scope = {"type": "websocket" if ws else "http", "method": method, "path": path, "scheme": "http",
                 "query_string": query.encode(), "headers": raw, "client": (client, 50000)}
        sent, reads = [], []

        async def receive():
            reads.append(1)
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message):
            sent.append(message)

        async def go():
            await self.gate(scope, receive, send)

        run_async(go())
        if ws:
            return SimpleNamespace(accepted=sent[0]["type"] == "websocket.accept", reads=len(reads))
        start = sent[0]
        headers = {}
        for k, v in start["headers"]:
            headers.setdefault(k.decode(), v.decode())
        return SimpleNamespace(status=start["status"], headers=headers, reads=len(reads),
                               body=b"".join(m.get("body", b"") for m in sent[1:]))


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.delenv("LLMOS_WEB_PASSWORD", raising=False)
    store = Store(tmp_path / "llmos.db")
    accounts = Accounts(store)
    engine = SimpleNamespace(accounts=accounts, store=store)
    book, inner = WebLogins(), Inner()
    feed = {"data": b'{"ts": [1]}'}
    alive = {"sessions": set()}
    gate = WebGate(inner, engine=lambda: engine, address=lambda: "127.0.0.1", feed=lambda: feed["data"],
                   session_alive=lambda sid: sid in alive["sessions"], book=book,
                   settings=Settings(home=tmp_path, public_host="llm.example.org"))
    yield SimpleNamespace(gate=gate, client=Client(gate), accounts=accounts, store=store, book=book, inner=inner,
                          alive=alive["sessions"])
    store.close()


def log_in(site, name: str, password: str, headers: dict | None = None, **kw):
    body = f"name={name}&password={password.replace(' ', '+')}&next=/chat".encode()
    return site.client.request("POST", "/_llmos/login", body=body, **kw,
                               headers={"content-type": "application/x-www-form-urlencoded", **(headers or {})})


def cookie_of(reply) -> str:
    return reply.headers["set-cookie"].split(";")[0].split("=", 1)[1]


def test_only_loopback_names_and_the_public_name_are_served(site):
    for host in ("127.0.0.1:8501", "localhost:8501", "LOCALHOST", "[::1]:8501", "llm.example.org"):
        assert site.client.request("GET", "/", host=host).status == 200, host
    for host in ("attacker.example", "attacker.example:8501", "127.0.0.1.attacker.example", "", "localhost:x"):
        reply = site.client.request("GET", "/", host=host)
        assert reply.status == 421 and reply.reads == 0, host
        assert not site.client.request("GET", "/_stcore/stream", host=host, ws=True).accepted
        assert site.client.request("PUT", "/_stcore/upload_file/s/f", host=host, body=b"x" * 100).status == 421
    assert len(site.inner.reached) == 5


def test_with_no_user_on_loopback_nothing_is_asked(site):
    assert site.client.request("GET", "/chat").status == 200
    assert site.client.request("GET", "/_stcore/stream", ws=True).accepted
    assert site.client.request("GET", "/_llmos/login").status == 303      # nothing to log in to


def test_once_a_user_exists_nothing_passes_without_the_login(site):
    site.accounts.add_user("alice", "alice password")
    reply = site.client.request("GET", "/chat?x=1")
    assert reply.status == 303 and reply.headers["location"] == "/_llmos/login?next=/chat%3Fx%3D1"
    upload = site.client.request("PUT", "/_stcore/upload_file/some-session/f1", body=b"x" * 1000)
    assert upload.status == 401 and upload.reads == 0                  # refused before its body is read
    assert not site.client.request("GET", "/_stcore/stream", ws=True).accepted
    assert site.client.request("GET", "/_stcore/health").status == 200   # liveness stays open
    assert site.inner.reached == [("http", "/_stcore/health")]
    page = site.client.request("GET", "/_llmos/login?next=/chat")
    assert page.status == 200 and b'name="password"' in page.body and b"<script" not in page.body
    assert "frame-ancestors" in page.headers["content-security-policy"] or page.headers["x-frame-options"] == "DENY"


def test_a_login_sets_an_httponly_samesite_cookie_that_opens_everything(site):
    site.accounts.add_user("alice", "alice password")
    wrong = log_in(site, "alice", "not her password")
    assert wrong.status == 401 and b"Wrong name or password" in wrong.body and "set-cookie" not in wrong.headers
    assert [e["kind"] for e in site.store.events(kinds=("login_failed",))] == ["login_failed"]   # logged
    reply = log_in(site, "alice", "alice password")
    assert reply.status == 303 and reply.headers["location"] == "/chat"
    attributes = reply.headers["set-cookie"].split("; ")
    assert attributes[0].startswith(f"{COOKIE}=") and {"HttpOnly", "SameSite=Lax", "Path=/"} <= set(attributes)
    assert any(a.startswith("Max-Age=") and 0 < int(a[8:]) <= 12 * 3600 for a in attributes)
    cookie = {"cookie": f"{COOKIE}={cookie_of(reply)}"}
    assert site.client.request("GET", "/chat", headers=cookie).status == 200
    assert site.client.request("GET", "/_stcore/stream", headers=cookie, ws=True).accepted
    assert site.client.request("GET", "/_llmos/login", headers=cookie).status == 303   # already in
    tampered = cookie_of(reply)[:-1] + ("0" if cookie_of(reply)[-1] != "0" else "1")
    assert site.client.request("GET", "/chat", headers={"cookie": f"{COOKIE}={tampered}"}).status == 303


def test_a_login_from_another_site_or_too_big_is_refused_unread(site):
    site.accounts.add_user("alice", "alice password")
    assert log_in(site, "alice", "alice password", headers={"origin": "http://attacker.example"}).status == 403
    big = site.client.request("POST", "/_llmos/login", body=b"name=alice&password=" + b"x" * 20000)
    assert big.status == 413
    assert safe_next("//attacker.example/x", "") == "/" and safe_next("https://a.example", "") == "/"
    assert safe_next("/chat?c=1", "") == "/chat?c=1"


def test_parallel_tries_cannot_outrun_the_back_off(site):
    """Sixteen tries at once from one address: one is checked, the others are told to wait; and after
    five failures every try waits, whatever the number of connections it uses."""
    site.accounts.add_user("alice", "alice password")
    gate = site.gate

    async def burst():
        async def one(i):
            sent = []
            body = f"name=alice&password=guess{i}".encode()

            async def receive():
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message):
                sent.append(message)
            scope = {"type": "http", "method": "POST", "path": "/_llmos/login", "query_string": b"",
                     "headers": [(b"host", b"127.0.0.1")], "client": ("10.0.0.9", 1000 + i), "scheme": "http"}
            await gate(scope, receive, send)
            return sent[0]["status"]
        return await asyncio.gather(*(one(i) for i in range(16)))

    statuses = run_async(burst())
    assert statuses.count(401) == 1 and statuses.count(429) == 15
    for _ in range(8):
        run_async(burst())
    checked = len(site.store.events(kinds=("login_failed",)))
    assert checked <= 6          # five free failures, then the back-off: one more at most in this burst
    assert log_in(site, "alice", "alice password", client="10.0.0.9").status == 429   # the address waits


def test_uploads_and_resumed_sessions_need_the_login_they_were_opened_under(site):
    site.accounts.add_user("alice", "alice password")
    site.accounts.add_user("bob", "bob password")
    alice = {"cookie": f"{COOKIE}={cookie_of(log_in(site, 'alice', 'alice password'))}"}
    bob = {"cookie": f"{COOKIE}={cookie_of(log_in(site, 'bob', 'bob password'))}"}
    alice_login = site.book.check(alice["cookie"].split("=", 1)[1])
    site.book.bind("session-a", alice_login.id)                       # what alice's script run does
    assert site.client.request("PUT", "/_stcore/upload_file/session-a/f", headers=alice, body=b"x").status == 200
    refused = site.client.request("PUT", "/_stcore/upload_file/session-a/f", headers=bob, body=b"x")
    assert refused.status == 403 and refused.reads == 0
    assert site.client.request("PUT", "/_stcore/upload_file/unknown/f", headers=alice, body=b"x").status == 403
    resume = {"sec-websocket-protocol": "streamlit, xsrf, session-a"}
    assert site.client.request("GET", "/_stcore/stream", headers={**alice, **resume}, ws=True).accepted
    assert not site.client.request("GET", "/_stcore/stream", headers={**bob, **resume}, ws=True).accepted
    assert not site.client.request("GET", "/_stcore/stream", headers=resume, ws=True).accepted   # no cookie


def test_logout_ends_the_login_everywhere_and_clears_the_cookie(site):
    site.accounts.add_user("alice", "alice password")
    cookie = {"cookie": f"{COOKIE}={cookie_of(log_in(site, 'alice', 'alice password'))}"}
    assert site.client.request("POST", "/_llmos/logout", headers={**cookie, "origin": "http://evil.example"}).status == 403
    reply = site.client.request("POST", "/_llmos/logout", headers={**cookie, "origin": "http://127.0.0.1:8501"})
    assert reply.status == 303 and reply.headers["set-cookie"].startswith(f"{COOKIE}=; Max-Age=0")
    assert site.client.request("GET", "/chat", headers=cookie).status == 303     # a copy of the cookie is dead too
    assert not site.client.request("GET", "/_stcore/stream", headers=cookie, ws=True).accepted


def test_the_feed_token_is_per_session_short_lived_and_ends_with_the_login(site):
    clock = {"now": 1000.0}
    site.book.clock = lambda: clock["now"]
    site.accounts.add_user("alice", "alice password")
    site.accounts.add_user("bob", "bob password")
    alice = {"cookie": f"{COOKIE}={cookie_of(log_in(site, 'alice', 'alice password'))}"}
    bob = {"cookie": f"{COOKIE}={cookie_of(log_in(site, 'bob', 'bob password'))}"}
    login = site.book.check(alice["cookie"].split("=", 1)[1])
    site.alive.add("s1")
    token = site.book.feed_token("s1", login.id)
    assert token != site.book.feed_token("s2", login.id)                      # one per session
    assert site.book.feed_token("s1", login.id) == token                      # kept while fresh
    ok = site.client.request("GET", f"/_llmos/live_feed?t={token}", headers=alice)
    assert ok.status == 200 and ok.body == b'{"ts": [1]}'
    assert site.client.request("GET", f"/_llmos/live_feed?t={token}", headers=bob).status == 403   # not bob's
    assert site.client.request("GET", f"/_llmos/live_feed?t={token}").status == 403               # no login
    assert site.client.request("GET", "/_llmos/live_feed?t=guess", headers=alice).status == 403
    site.alive.discard("s1")
    assert site.client.request("GET", f"/_llmos/live_feed?t={token}", headers=alice).status == 403  # session gone
    site.alive.add("s1")
    clock["now"] += 121                                                        # two minutes later
    assert site.client.request("GET", f"/_llmos/live_feed?t={token}", headers=alice).status == 403
    fresh = site.book.feed_token("s1", login.id)
    assert fresh != token and site.client.request("GET", f"/_llmos/live_feed?t={fresh}", headers=alice).status == 200
    site.book.close(login.id)                                                  # logged out
    assert site.book.check_feed_token(fresh, login.id) is None
