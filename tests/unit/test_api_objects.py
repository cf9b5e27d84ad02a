"""/llmos/v1 through HTTP on loopback: each key acts as its user, another user's id is a 404 like a missing
one, and once any user exists every request needs a key (401 without, loopback included)."""
from __future__ import annotations

import http.client
import json
from types import SimpleNamespace

import pytest

from llmos_core.api.server import start_api
from llmos_core.accounts import LOCAL_ADMIN
from llmos_core.api.auth import UserAuth
from llmos_core.engine import Engine
from llmos_core.settings import Settings
from llmos_core.usecases import ask

PASSWORD = "correct horse"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    engine = Engine(Settings(home=tmp_path_factory.mktemp("api-objects"), api_key="admin-env-key"),
                    primary=False, start_threads=False)
    start_api(engine, "127.0.0.1", 0)
    for name in ("alice", "bob"):
        engine.accounts.add_user(name, PASSWORD)
    keys = {name: engine.accounts.create_key(name) for name in ("alice", "bob")}
    yield engine, keys
    engine.close()


def call(engine, method: str, path: str, key: str | None = None, body: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", engine.api.port, timeout=30)
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    conn.request(method, path, json.dumps(body) if body is not None else None, headers)
    response = conn.getresponse()
    return response.status, json.loads(response.read() or b"null")


def test_without_a_key_or_with_a_wrong_one_every_route_is_401(api):
    engine, keys = api
    for path in ("/llmos/v1/conversations", "/llmos/v1/jobs", "/v1/models"):
        assert call(engine, "GET", path)[0] == 401
        assert call(engine, "GET", path, "llmos-not-a-key")[0] == 401
    assert call(engine, "GET", "/health")[0] == 200


def test_conversations_are_scoped_to_the_keys_user(api):
    engine, keys = api
    status, made = call(engine, "POST", "/llmos/v1/conversations", keys["alice"],
                        {"title": "alice's", "messages": [{"role": "user", "content": "hi"},
                                                          {"role": "assistant", "content": "hello"}]})
    assert status == 200 and made["title"] == "alice's" and [m["role"] for m in made["messages"]] == ["user", "assistant"]
    cid = made["id"]
    assert call(engine, "GET", f"/llmos/v1/conversations/{cid}", keys["alice"])[1]["id"] == cid
    theirs = call(engine, "GET", f"/llmos/v1/conversations/{cid}", keys["bob"])
    missing = call(engine, "GET", "/llmos/v1/conversations/999999", keys["bob"])
    assert theirs[0] == missing[0] == 404
    assert theirs[1]["error"]["code"] == missing[1]["error"]["code"] == "not_found"
    assert call(engine, "GET", "/llmos/v1/conversations", keys["bob"])[1] == {"object": "list", "data": []}
    assert [c["id"] for c in call(engine, "GET", "/llmos/v1/conversations", keys["alice"])[1]["data"]] == [cid]
    admin = call(engine, "GET", "/llmos/v1/conversations", "admin-env-key")[1]["data"]   # LLMOS_API_KEY: an admin
    assert cid in [c["id"] for c in admin]
    assert call(engine, "POST", "/llmos/v1/conversations", keys["bob"],
                {"title": "x", "messages": [{"role": "wizard", "content": "hi"}]})[0] == 400


def test_jobs_and_collections_are_scoped_to_the_keys_user(api):
    engine, keys = api
    alice = engine.accounts.user_by_name("alice")
    job_id = engine.scheduler.jobs.insert("benchmark", {}, 0, "cpu", 0, None, "alice's", None,
                                          lambda i: engine.settings.jobs_dir / f"{i}.log", owner=alice.id)
    assert call(engine, "GET", f"/llmos/v1/jobs/{job_id}", keys["alice"])[1]["id"] == job_id
    assert call(engine, "GET", f"/llmos/v1/jobs/{job_id}", keys["bob"])[0] == 404
    assert call(engine, "GET", "/llmos/v1/jobs", keys["bob"])[1]["data"] == []
    ask.index_for(engine).create_collection("alices", "bag", alice.id)
    assert [c["name"] for c in call(engine, "GET", "/llmos/v1/collections", keys["alice"])[1]["data"]] == ["alices"]
    assert call(engine, "GET", "/llmos/v1/collections", keys["bob"])[1]["data"] == []


def test_a_single_user_start_needs_no_key():
    no_users = SimpleNamespace(accounts=SimpleNamespace(any_users=lambda: False))
    assert UserAuth(None, no_users).user_of({}) == LOCAL_ADMIN
    assert UserAuth(None, no_users).user_of({b"authorization": b"Bearer anything"}) == LOCAL_ADMIN
    assert UserAuth(None, no_users, api_key="k").user_of({}) is None        # a key set: it is asked


def test_an_id_beyond_what_the_store_holds_is_a_400_not_a_server_error(api):
    """Found by schemathesis: an id over SQLite's 64-bit integers overflowed in the store (500)."""
    engine, keys = api
    for path in ("/llmos/v1/conversations/9223372036854775808", "/llmos/v1/jobs/99999999999999999999",
                 "/llmos/v1/jobs/0", "/llmos/v1/jobs?limit=-1"):
        status, body = call(engine, "GET", path, keys["alice"])
        assert status == 400, (path, status, body)
