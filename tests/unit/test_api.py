"""The OpenAI-compatible API, driven over real HTTP on 127.0.0.1 with the official openai package and raw
sockets: chat, streaming, completions, embeddings, errors with their statuses, SSE framing, disconnects,
the API key, and /metrics parsed with prometheus_client's parser. Tiny models throughout."""
from __future__ import annotations

import base64
import http.client
import json
import socket
import struct
import threading
import time

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmos_core.api.metrics import UNKNOWN_MODEL
from llmos_core.api.server import ApiServer, check_listen, start_api
from llmos_core.engine import Engine
from llmos_core.errors import SettingsError
from llmos_core.generation import SamplingParams
from llmos_core.models.catalog import EMBEDDING
from llmos_core.settings import Settings

from api_helpers import make_embedding_model

HELLO = [{"role": "user", "content": "Hello, how are you today?"}]


@pytest.fixture(scope="module")
def engine(tmp_path_factory, tiny_causal, tiny_base):
    eng = Engine(Settings(home=tmp_path_factory.mktemp("api-home")), primary=False, start_threads=False)
    for folder in (tiny_causal, tiny_base):
        eng.catalog.register(eng.catalog.resolve(str(folder)))
    embedder = make_embedding_model(tmp_path_factory.mktemp("tiny-embed"))
    eng.catalog.register(eng.catalog.resolve(str(embedder), task=EMBEDDING))
    start_api(eng, "127.0.0.1", 0)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def names(engine, tiny_causal, tiny_base, tmp_path_factory):
    chat = engine.catalog.resolve(str(tiny_causal)).name
    base = engine.catalog.resolve(str(tiny_base)).name
    embed = next(s.name for s in engine.catalog.list() if s.task == EMBEDDING and s.name.startswith("tiny-embed"))
    return {"chat": chat, "base": base, "embed": embed}


@pytest.fixture
def client(engine):
    return openai.OpenAI(base_url=f"{engine.api.url}/v1", api_key="unused", max_retries=0, timeout=60)


def raw_post(engine, path: str, body: dict, headers: dict | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", engine.api.port, timeout=60)
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json", **(headers or {})})
    return conn.getresponse()


def test_health_and_models(engine, names):
    conn = http.client.HTTPConnection("127.0.0.1", engine.api.port, timeout=10)
    conn.request("GET", "/health")
    assert json.loads(conn.getresponse().read())["status"] == "ok"
    client = openai.OpenAI(base_url=f"{engine.api.url}/v1", api_key="x", max_retries=0)
    ids = [m.id for m in client.models.list()]
    assert {names["chat"], names["base"], names["embed"]} <= set(ids)
    assert client.models.retrieve(names["chat"]).id == names["chat"]


def test_chat_matches_the_in_process_service(engine, names, client):
    reply = client.chat.completions.create(model=names["chat"], messages=HELLO, temperature=0, max_tokens=12)
    local = engine.chat.generate(names["chat"], HELLO, SamplingParams(do_sample=False, max_new_tokens=12))
    assert reply.object == "chat.completion" and reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == local.text
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens == local.stats["tokens"]
    assert reply.usage.prompt_tokens == local.stats["prompt_tokens"] > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_streamed_chat_gives_the_same_text_and_usage_last(engine, names, client):
    whole = client.chat.completions.create(model=names["chat"], messages=HELLO, temperature=0, max_tokens=12)
    chunks = list(client.chat.completions.create(model=names["chat"], messages=HELLO, temperature=0, max_tokens=12,
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == whole.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_completions_take_the_raw_prompt(engine, names, client):
    reply = client.completions.create(model=names["base"], prompt="The quick brown", temperature=0, max_tokens=6)
    local = list(engine.chat.stream(names["base"], [], SamplingParams(do_sample=False, max_new_tokens=6),
                                    raw_prompt="The quick brown"))
    assert reply.object == "text_completion"
    assert reply.choices[0].text == "".join(e.text for e in local)
    assert reply.usage.prompt_tokens == local[-1].prompt_tokens > 0
    assert reply.usage.completion_tokens == local[-1].tokens
    streamed = list(client.completions.create(model=names["base"], prompt="The quick brown", temperature=0,
                                              max_tokens=6, stream=True))
    assert "".join(c.choices[0].text for c in streamed) == reply.choices[0].text


def test_sse_framing_over_raw_http(engine, names):
    response = raw_post(engine, "/v1/chat/completions", {"model": names["chat"], "messages": HELLO, "stream": True,
                                                         "max_tokens": 5, "temperature": 0})
    assert response.status == 200 and response.getheader("content-type").startswith("text/event-stream")
    body = response.read().decode()
    events = body.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    for event in events[:-2]:
        assert event.startswith("data: ") and "\n" not in event
        assert json.loads(event[len("data: "):])["object"] == "chat.completion.chunk"


def test_errors_have_openai_shapes_and_statuses(engine, names, client):
    with pytest.raises(openai.NotFoundError) as found:
        client.chat.completions.create(model="no-such-model", messages=HELLO)
    assert found.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError, match="too many"):   # says by how much
        client.chat.completions.create(model=names["chat"], messages=[{"role": "user", "content": "fox " * 400}],
                                       max_tokens=16)
    with pytest.raises(openai.BadRequestError, match="too many"):
        client.completions.create(model=names["base"], prompt="dog " * 400, max_tokens=16)
    with pytest.raises(openai.BadRequestError, match="n=2"):
        client.chat.completions.create(model=names["chat"], messages=HELLO, n=2)
    with pytest.raises(openai.BadRequestError, match="repetition_penalty"):
        client.chat.completions.create(model=names["chat"], messages=HELLO, presence_penalty=0.5)
    with pytest.raises(openai.BadRequestError, match="not a causal"):
        client.chat.completions.create(model=names["embed"], messages=HELLO)
    with pytest.raises(openai.BadRequestError, match="not a sentence-embedding"):
        client.embeddings.create(model=names["chat"], input="hi")
    response = raw_post(engine, "/v1/chat/completions", {"model": names["chat"], "messages": "not a list"})
    assert response.status == 400 and json.loads(response.read())["error"]["type"] == "invalid_request_error"
    response = raw_post(engine, "/v1/chat/completions", {"model": names["chat"], "messages": HELLO,
                                                         "temperature": 5})
    assert response.status == 400


def test_a_full_queue_is_429_with_retry_after(engine, names):
    service = engine.chat
    saved = service.max_active, service.max_waiting
    service.max_active, service.max_waiting = 1, 0
    holder = service.stream(names["chat"], HELLO, SamplingParams(max_new_tokens=200))
    try:
        next(holder)   # admitted: holds the only slot
        response = raw_post(engine, "/v1/chat/completions", {"model": names["chat"], "messages": HELLO})
        assert response.status == 429 and int(response.getheader("retry-after")) > 0
        assert json.loads(response.read())["error"]["code"] == "queue_full"
    finally:
        holder.close()
        service.max_active, service.max_waiting = saved


def test_a_model_that_cannot_fit_is_503_with_the_figures(engine, names, client):
    engine.models.unload(names["base"])
    saved, engine.models.budget = engine.models.budget, 1000
    try:
        with pytest.raises(openai.InternalServerError) as refused:
            client.completions.create(model=names["base"], prompt="hello", max_tokens=2)
        assert refused.value.status_code == 503
        assert "needs" in refused.value.message and "budget" in refused.value.message
    finally:
        engine.models.budget = saved


def test_a_client_that_disconnects_cancels_its_generation(engine, names):
    ended = []
    engine.chat.observers.append(lambda model, event: ended.append(event))
    backend = engine.chat.choose_backend(names["chat"]).backend
    body = json.dumps({"model": names["chat"], "messages": HELLO, "stream": True, "max_tokens": 240,
                       "temperature": 1.0}).encode()
    sock = socket.create_connection(("127.0.0.1", engine.api.port), timeout=30)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body) + body)
    received = b""
    while b"data: " not in received:            # the headers may come alone, then the first event
        chunk = sock.recv(4096)
        assert chunk, f"the server closed the stream early: {received!r}"
        received += chunk
    sock.close()
    deadline = time.monotonic() + 5
    while engine.chat.queue_depth(names["chat"], backend)["running"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert engine.chat.queue_depth(names["chat"], backend)["running"] == 0   # the slot is free again
    engine.chat.observers.pop()
    assert ended and ended[-1].finish_reason == "cancelled" and ended[-1].tokens < 240


def test_embeddings_batched_equal_one_at_a_time(engine, names, client):
    texts = ["The quick brown fox.", "LLM OS runs language models on this machine.", "Hello"]
    together = client.embeddings.create(model=names["embed"], input=texts)
    assert [d.index for d in together.data] == [0, 1, 2] and together.usage.prompt_tokens > 0
    for text, item in zip(texts, together.data):
        alone = client.embeddings.create(model=names["embed"], input=text).data[0].embedding
        assert alone == pytest.approx(item.embedding, abs=1e-5)
        assert sum(x * x for x in alone) == pytest.approx(1.0, abs=1e-4)
    packed = raw_post(engine, "/v1/embeddings", {"model": names["embed"], "input": texts[0],
                                                 "encoding_format": "base64"})
    raw = base64.b64decode(json.loads(packed.read())["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == pytest.approx(together.data[0].embedding, abs=1e-6)
    assert any(m["name"] == names["embed"] for m in engine.models.resident())   # held by the memory manager


def test_metrics_parse_and_count(engine, names, client):
    client.chat.completions.create(model=names["chat"], messages=HELLO, max_tokens=4)
    conn = http.client.HTTPConnection("127.0.0.1", engine.api.port, timeout=10)
    conn.request("GET", "/metrics")
    response = conn.getresponse()
    assert response.status == 200
    families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}
    assert all(name.startswith("llmos_") for name in families)
    def value(family, **labels):
        return sum(s.value for s in families[family].samples
                   if all(s.labels.get(k) == v for k, v in labels.items()) and not s.name.endswith("_created"))
    assert value("llmos_generated_tokens", model=names["chat"]) > 0
    assert value("llmos_requests", model=names["chat"], endpoint="chat", status="200") >= 1
    # a name the catalog does not hold is counted under one label, not one of its own (issue 27)
    assert value("llmos_requests", model=UNKNOWN_MODEL, endpoint="chat", status="404") >= 1
    assert not any(s.labels.get("model") == "no-such-model" for s in families["llmos_requests"].samples)
    assert "llmos_time_to_first_token_seconds" in families and "llmos_tokens_per_second" in families
    assert value("llmos_resident_model_bytes", model=names["chat"]) > 0
    assert "llmos_queue_depth" in families and "llmos_jobs" in families


def test_an_api_key_is_checked(engine, names):
    server = ApiServer(engine, "127.0.0.1", 0, api_key="s3cret-key").start()
    try:
        keyless = openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            keyless.models.list()
        keyed = openai.OpenAI(base_url=f"{server.url}/v1", api_key="s3cret-key", max_retries=0)
        assert names["chat"] in [m.id for m in keyed.models.list()]
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/health")
        assert json.loads(conn.getresponse().read()) == {"status": "ok"}   # probes get liveness, no details
    finally:
        server.stop()


def test_listening_beyond_loopback_needs_a_key(engine):
    check_listen("127.0.0.1", None)
    check_listen("::1", None)
    check_listen("0.0.0.0", "key")
    with pytest.raises(SettingsError, match="API key"):
        check_listen("0.0.0.0", None)
    with pytest.raises(SettingsError):
        ApiServer(engine, "192.168.1.10", 0, None)


def test_concurrent_api_clients_share_one_batch(engine, names):
    runner = engine.chat.runner(engine.models.load(names["chat"]))
    if not getattr(runner, "batching", False):
        pytest.skip("continuous batching unavailable for the tiny model here")
    runner.peak_batch = 0
    client = openai.OpenAI(base_url=f"{engine.api.url}/v1", api_key="x", max_retries=0, timeout=120)
    threads = [threading.Thread(target=lambda: client.chat.completions.create(
        model=names["chat"], messages=HELLO, max_tokens=120, temperature=1.0)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert runner.peak_batch >= 2
