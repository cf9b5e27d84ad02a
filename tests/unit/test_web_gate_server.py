"""The review's login findings (issue 26), each against a real `streamlit run app.py` on a loopback port,
over HTTP and the websocket as an attacker would send them. Each failed on the code before the gate.
(Finding 5, the live feed's token, is tests/unit/test_web_gate.py and tests/app/test_login.py.)"""
from __future__ import annotations

import threading
import time
import uuid
from contextlib import contextmanager

import pytest
import requests
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from llmos_core.accounts import Accounts
from llmos_core.settings import Settings
from llmos_core.store import Store

PASSWORD = "alice's long password"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from e2e.conftest import AppServer

    home = tmp_path_factory.mktemp("gate") / "home"
    home.mkdir(mode=0o700)
    store = Store(Settings(home=home).db_path)
    Accounts(store).add_user("alice", PASSWORD, "admin")
    store.close()
    app = AppServer(home, {"LLMOS_WEB_PASSWORD": "the old shared password"})
    yield app
    app.stop()


@contextmanager
def session(url: str, cookie: str | None = None, session_id: str | None = None, host: str | None = None):
    """A Streamlit session over the websocket, as the page opens one: yields its id while it is connected."""
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    headers = {"Origin": url, **({"Cookie": cookie} if cookie else {}), **({"Host": host} if host else {})}
    protocols = ["streamlit", "no-xsrf"] + ([session_id] if session_id else [])
    with connect(url.replace("http", "ws") + "/_stcore/stream", subprotocols=protocols,
                 additional_headers=headers, open_timeout=30) as ws:
        rerun = BackMsg()
        rerun.rerun_script.query_string = ""
        ws.send(rerun.SerializeToString())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            message = ForwardMsg()
            message.ParseFromString(ws.recv(timeout=60))
            if message.WhichOneof("type") == "new_session":
                yield message.new_session.initialize.session_id
                return
    raise AssertionError("no session was opened")


def open_session(url: str, **kw) -> str:
    with session(url, **kw) as session_id:
        return session_id


def log_in(url: str, name: str, password: str) -> requests.Response:
    return requests.post(f"{url}/_llmos/login", data={"name": name, "password": password, "next": "/"},
                         allow_redirects=False, timeout=30)


def test_1_a_foreign_host_name_is_refused_for_the_page_the_websocket_and_uploads(server):
    """DNS rebinding: a page at attacker.example whose name now points at 127.0.0.1 sends its own name."""
    assert requests.get(f"{server.url}/", timeout=90, allow_redirects=False).status_code in (200, 303)   # engine up
    for path in ("/", "/chat", "/_llmos/login", "/static/js/index.js"):
        reply = requests.get(f"{server.url}{path}", headers={"Host": "attacker.example"}, timeout=10)
        assert reply.status_code == 421, path
    upload = requests.put(f"{server.url}/_stcore/upload_file/{uuid.uuid4()}/f", headers={"Host": "attacker.example"},
                          files={"file": ("a.txt", b"x" * 1000)}, timeout=10)
    assert upload.status_code == 421
    with pytest.raises(InvalidStatus):
        open_session(server.url, host="attacker.example")


def test_2_nothing_sent_before_the_login_is_kept(server):
    """An upload from a visitor that never logged in is refused before its body is read, though it holds
    Streamlit's XSRF cookie and (before the gate) a live session of its own."""
    visitor = requests.Session()
    visitor.get(f"{server.url}/_stcore/health", timeout=10)    # Streamlit's XSRF cookie, as the page gets it
    xsrf = visitor.cookies.get("_streamlit_xsrf", "")

    def upload(session_id: str) -> int:
        return visitor.put(f"{server.url}/_stcore/upload_file/{session_id}/file1", headers={"X-Xsrftoken": xsrf},
                           files={"file": ("big.txt", b"x" * (2 << 20), "text/plain")}, timeout=30).status_code

    try:
        with session(server.url) as session_id:                 # before the gate, any visitor got one
            status = upload(session_id)
    except InvalidStatus:
        status = upload(str(uuid.uuid4()))
    assert status in (401, 403), status


def test_3_the_login_is_the_browsers_cookie_not_the_session_id(server):
    """Reconnecting with a logged-in session's id but without its cookie is refused; with it, resumed."""
    reply = log_in(server.url, "alice", PASSWORD)
    assert reply.status_code == 303, reply.status_code
    cookie = f"llmos_login={reply.cookies['llmos_login']}"
    assert "httponly" in reply.headers["set-cookie"].lower()
    session_id = open_session(server.url, cookie=cookie)
    with pytest.raises(InvalidStatus) as refused:
        open_session(server.url, session_id=session_id)
    assert refused.value.response.status_code == 403
    assert open_session(server.url, cookie=cookie, session_id=session_id) == session_id
    out = requests.post(f"{server.url}/_llmos/logout", headers={"Cookie": cookie, "Origin": server.url},
                        allow_redirects=False, timeout=10)
    assert out.status_code == 303 and "max-age=0" in out.headers["set-cookie"].lower()
    with pytest.raises(InvalidStatus):                 # the cookie's copies died with the login
        open_session(server.url, cookie=cookie, session_id=session_id)


def test_4_many_connections_do_not_multiply_password_guesses(server):
    """Eight clients guessing at once for three seconds: the back-off, per address and per account, holds
    them all to a handful of checked guesses; the rest are told to wait. Each failure is an event."""
    statuses: list[int] = []
    stop = time.monotonic() + 3.0

    def guess(worker: int) -> None:
        n = 0
        while time.monotonic() < stop:
            name = "alice" if worker % 2 else f"nobody{worker}"
            statuses.append(log_in(server.url, name, f"guess {worker}-{n}").status_code)
            n += 1

    threads = [threading.Thread(target=guess, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    checked = statuses.count(401)
    assert 1 <= checked <= 8, statuses          # 5 free failures, then waits of 1 s and 2 s
    assert statuses.count(429) == len(statuses) - checked and len(statuses) > 3 * checked
    store = Store(Settings(home=server.home).db_path)
    try:
        assert len(store.events(kinds=("login_failed",))) >= checked
    finally:
        store.close()
