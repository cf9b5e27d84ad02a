"""The API against hostile clients (issue 27): made-up model names do not grow /metrics, error bodies carry
no absolute paths, a key hides /health's details and the docs, a foreign Host header is refused, a body over
the limit is refused (413) before it is parsed, with or without Content-Length, and `stop` is bounded."""
from __future__ import annotations

import http.client
import json
import shutil
import socket

import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmos_core.api.errors import scrub
from llmos_core.api.metrics import UNKNOWN_MODEL
from llmos_core.api.server import ApiServer, start_api
from llmos_core.engine import Engine
from llmos_core.settings import Settings

HELLO = [{"role": "user", "content": "Hello"}]


@pytest.fixture(scope="module")
def engine(tmp_path_factory, tiny_causal):
    eng = Engine(Settings(home=tmp_path_factory.mktemp("api-hard-home"), api_max_body_mb=2),
                 primary=False, start_threads=False)
    eng.catalog.register(eng.catalog.resolve(str(tiny_causal)))
    start_api(eng, "127.0.0.1", 0)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def chat_model(engine, tiny_causal):
    return engine.catalog.resolve(str(tiny_causal)).name


def request(port: int, method: str, path: str, body=None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    data = None if body is None else json.dumps(body)
    conn.request(method, path, data, {"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    return response.status, (json.loads(payload) if payload[:1] == b"{" else payload)


def test_a_flood_of_made_up_model_names_leaves_the_metrics_bounded(engine, chat_model):
    conn = http.client.HTTPConnection("127.0.0.1", engine.api.port, timeout=30)
    for i in range(2000):   # one kept-alive connection: the flood as a client would send it
        conn.request("POST", "/v1/chat/completions", json.dumps({"model": f"made-up-{i}", "messages": HELLO}),
                     {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        assert response.status == 404
    conn.close()
    status, text = request(engine.api.port, "GET", "/metrics")
    families = {f.name: f for f in text_string_to_metric_families(text.decode())}
    samples = [s for s in families["llmos_requests"].samples if s.name.endswith("_total")]
    assert len(samples) <= 10, f"{len(samples)} series of llmos_requests"
    unknown = [s.value for s in samples if s.labels["model"] == UNKNOWN_MODEL and s.labels["status"] == "404"]
    assert unknown == [2000.0]
    assert not any(s.labels["model"].startswith("made-up-") for s in samples)
    assert len(text) < 100_000


def test_error_bodies_carry_no_absolute_paths(engine, tiny_causal, tmp_path):
    home = engine.settings.home
    assert scrub(f"cannot read {home}/models/x/config.json: gone", home) == "cannot read models/x/config.json: gone"
    assert scrub("cannot read /etc/shadow.", home) == "cannot read shadow."
    assert scrub("see /v1/models and http://127.0.0.1:8000/v1", home) == "see /v1/models and http://127.0.0.1:8000/v1"
    # a registered model whose folder has gone: the load error named the folder
    folder = tmp_path / "secret-place" / "vanishing"
    shutil.copytree(tiny_causal, folder)
    spec = engine.catalog.resolve(str(folder))
    engine.catalog.register(spec)
    shutil.rmtree(folder)
    status, body = request(engine.api.port, "POST", "/v1/chat/completions", {"model": spec.name, "messages": HELLO})
    assert status >= 400 and set(body["error"]) == {"message", "type", "param", "code"}
    assert str(tmp_path) not in json.dumps(body) and "secret-place" not in json.dumps(body)


def test_with_a_key_health_is_bare_and_the_docs_need_the_key(engine):
    server = ApiServer(engine, "127.0.0.1", 0, api_key="s3cret-key").start()
    try:
        assert request(server.port, "GET", "/health") == (200, {"status": "ok"})
        status, body = request(server.port, "GET", "/health", headers={"Authorization": "Bearer s3cret-key"})
        assert status == 200 and "pid" in body
        for path in ("/docs", "/openapi.json", "/redoc", "/docs/oauth2-redirect"):
            status, body = request(server.port, "GET", path)
            assert status == 401 and body["error"]["code"] == "invalid_api_key", path
        assert request(server.port, "GET", "/openapi.json",
                       headers={"Authorization": "Bearer s3cret-key"})[0] == 200
    finally:
        server.stop()


def test_a_foreign_host_header_is_refused(engine, monkeypatch):
    port = engine.api.port
    status, body = request(port, "GET", "/v1/models", headers={"Host": "attacker.example"})
    assert status == 400 and body["error"]["code"] == "invalid_host" and body["error"]["type"]
    assert request(port, "GET", "/v1/models", headers={"Host": f"attacker.example:{port}"})[0] == 400
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "LOCALHOST"):
        assert request(port, "GET", "/v1/models", headers={"Host": host})[0] == 200, host
    monkeypatch.setattr(engine.settings, "public_host", "llm.example.org, other.example.org")
    server = ApiServer(engine, "127.0.0.1", 0).start()
    try:
        assert request(server.port, "GET", "/v1/models", headers={"Host": "llm.example.org"})[0] == 200
        assert request(server.port, "GET", "/v1/models", headers={"Host": "other.example.org:443"})[0] == 200
        assert request(server.port, "GET", "/v1/models", headers={"Host": "attacker.example"})[0] == 400
    finally:
        server.stop()


def _raw(port: int, head: bytes, body_pieces=()) -> tuple[int, dict]:
    """Sends `head` then the pieces (as far as the server reads them), returns the status and error body."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        try:
            for piece in body_pieces:
                sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass   # the server answered and closed before the rest: what a limit should do
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    status = int(data.split(b" ", 2)[1])
    return status, json.loads(data.split(b"\r\n\r\n", 1)[1])


def test_a_20_mb_body_is_refused_before_it_is_parsed(engine, chat_model):
    port = engine.api.port
    body = json.dumps({"model": chat_model, "messages": HELLO, "user": "x" * 20_000_000}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    status, error = _raw(port, head)       # refused on its Content-Length alone, before a byte of the body
    assert status == 413 and error["error"]["code"] == "request_too_large"
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()
    piece = 1 << 16
    chunks = (b"%x\r\n" % piece + body[i:i + piece] + b"\r\n" for i in range(0, len(body), piece))
    status, error = _raw(port, head, chunks)
    assert status == 413 and error["error"]["type"] == "invalid_request_error"
    # under the limit, the same route answers as ever
    status, _ = request(port, "POST", "/v1/chat/completions", {"model": chat_model, "messages": HELLO,
                                                               "max_tokens": 2})
    assert status == 200


def test_stop_takes_at_most_four_short_strings(engine, chat_model):
    port = engine.api.port
    for stop in (["a", "b", "c", "d", "e"], ["x" * 10_000], "y" * 10_000):
        status, body = request(port, "POST", "/v1/chat/completions",
                               {"model": chat_model, "messages": HELLO, "stop": stop, "max_tokens": 2})
        assert status == 400 and body["error"]["type"] == "invalid_request_error", stop[:3]
        assert "stop" in body["error"]["message"]
    status, _ = request(port, "POST", "/v1/chat/completions",
                        {"model": chat_model, "messages": HELLO, "stop": ["\n", "User:"], "max_tokens": 2})
    assert status == 200
