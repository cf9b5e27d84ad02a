"""LLM OS over MCP, driven by the `mcp` package's own client: `python -m llmos_core mcp` over stdio (a child
process on a data folder with a tiny chat model, a tiny embedder and a one-file collection), streamable
HTTP at the API's /mcp with and without the key, and hostile arguments refused in-process."""
from __future__ import annotations

import base64
import http.client
import json
import os
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from llmos_core.accounts import LOCAL_ADMIN
from llmos_core.api.server import start_api
from llmos_core.engine import Engine
from llmos_core.models.catalog import EMBEDDING
from llmos_core.mcp.server import build_server
from llmos_core.settings import Settings
from llmos_core.usecases import ask

import tiny_models
from api_helpers import in_own_loop, make_embedding_model

ROOT = Path(__file__).resolve().parents[2]
LEAVE = "Leave policy\n\nEvery employee gets twenty-five days of paid leave each year.\n\nThe office closes in August.\n"


def payload(result) -> dict | list:
    """A tool result's JSON (the SDK wraps a list return as {"result": [...]})."""
    assert not result.is_error, result.content[0].text
    data = result.structured_content
    return data["result"] if set(data) == {"result"} else data


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> dict:
    """A data folder with the tiny chat model and a one-file collection, made by an engine that is then closed.
    The chat model's window is widened to 2048 tokens (rotary positions: any length works), so the Ask
    prompt's instructions and a passage fit."""
    tiny = tiny_models.make_causal_lm(tmp_path_factory.mktemp("mcp-tiny-chat"), chat_template=True)
    config = json.loads((tiny / "config.json").read_text())
    (tiny / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 2048}))
    folder = tmp_path_factory.mktemp("mcp-home")
    engine = Engine(Settings(home=folder), primary=False, start_threads=False)
    chat = engine.catalog.register(engine.catalog.resolve(str(tiny), name="mcp-chat")).name
    embedder = make_embedding_model(tmp_path_factory.mktemp("mcp-embed"))
    embed = engine.catalog.register(engine.catalog.resolve(str(embedder), task=EMBEDDING)).name
    ask.add_files(engine, LOCAL_ADMIN, "handbook", [("leave.txt", LEAVE.encode())], embed_model=embed)
    (folder / "notes.txt").write_text("Good morning.\n\nThe weather is fine.\n")
    engine.close()
    return {"folder": folder, "chat": chat, "tiny": tiny, "embedder": embedder}


def test_stdio_serves_the_tools_and_resources(home):
    """The whole path a desktop client takes: spawn the command, list, call each tool, read each resource."""
    env = {**os.environ, "LLMOS_HOME": str(home["folder"]), "PYTHONPATH": str(ROOT)}
    params = StdioServerParameters(command=sys.executable, args=["-m", "llmos_core", "mcp"], env=env, cwd=str(ROOT))

    async def session() -> dict:
        async with Client(params, read_timeout_seconds=120) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            resources = {str(r.uri) for r in (await client.list_resources()).resources}
            templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
            out = {"tools": tools, "resources": resources, "templates": templates}
            out["chat"] = payload(await client.call_tool("chat", {"model": home["chat"], "prompt": "Hello there",
                                                                  "max_tokens": 5, "temperature": 0}))
            out["translate"] = payload(await client.call_tool("translate", {"path": "notes.txt", "target": "de",
                                                                            "model": home["chat"]}))
            out["saved"] = payload(await client.call_tool("translate", {
                "content_base64": base64.b64encode(b"Hello.\n").decode(), "filename": "hi.txt", "target": "fr",
                "model": home["chat"], "save": True}))
            out["ask"] = payload(await client.call_tool("ask", {"collection": "handbook", "model": home["chat"],
                                                                "question": "How many days of paid leave?",
                                                                "max_tokens": 8}))
            out["jobs"] = payload(await client.call_tool("list_jobs", {}))
            out["monitor"] = payload(await client.call_tool("monitor", {}))
            out["outside"] = await client.call_tool("translate", {"path": "../../etc/passwd", "target": "de"})
            out["models"] = json.loads((await client.read_resource("llmos://models")).contents[0].text)
            out["collections"] = json.loads((await client.read_resource("llmos://collections")).contents[0].text)
            out["files"] = json.loads((await client.read_resource("llmos://collections/handbook")).contents[0].text)
            return out

    out = in_own_loop(session)
    assert {"chat", "translate", "translation_result", "ask", "list_jobs", "submit_job", "monitor"} <= out["tools"]
    assert {"llmos://models", "llmos://collections"} <= out["resources"]
    assert "llmos://collections/{name}" in out["templates"]
    assert out["chat"]["model"] == home["chat"] and out["chat"]["finish_reason"] in ("stop", "length")
    assert isinstance(out["chat"]["text"], str) and 0 < out["chat"]["tokens"] <= 5
    assert out["translate"]["segments"] == 2 and isinstance(out["translate"]["text"], str)
    saved = out["saved"]["saved"]
    assert saved.startswith("mcp/translations/") and (home["folder"] / saved).is_file()
    assert out["ask"]["found"] and out["ask"]["citations"][0]["file"] == "leave.txt"
    assert out["jobs"] == []
    assert "running" in out["monitor"]
    assert out["outside"].is_error and "outside" in out["outside"].content[0].text
    assert {m["name"]: m["status"] for m in out["models"]}[home["chat"]] in ("loaded", "ready")
    assert [c["name"] for c in out["collections"]] == ["handbook"]
    assert [f["name"] for f in out["files"]] == ["leave.txt"]


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    settings = Settings(home=tmp_path_factory.mktemp("mcp-api-home"), api_key="s3cret-key")
    engine = Engine(settings, primary=False, start_threads=False)
    start_api(engine, "127.0.0.1", 0)
    yield engine
    engine.close()


def http_session(engine, key: str, calls: list[tuple[str, dict]]) -> list:
    """One MCP session at the API's /mcp with `key`, making `calls` in order (a tool's name and arguments, or
    a resource's URI and None); the tools' raw results and the resources' JSON."""
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    async def session() -> list:
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60) as http_client:
            async with Client(streamable_http_client(f"{engine.api.url}/mcp", http_client=http_client)) as client:
                return [await client.call_tool(name, arguments) if arguments is not None
                        else json.loads((await client.read_resource(name)).contents[0].text)
                        for name, arguments in calls]
    return in_own_loop(session)


def test_streamable_http_at_the_api_needs_the_key(api):
    conn = http.client.HTTPConnection("127.0.0.1", api.api.port, timeout=10)
    conn.request("POST", "/mcp", json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
                 {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"})
    response = conn.getresponse()
    assert response.status == 401 and b"API key" in response.read()

    import httpx2

    async def session(key: str) -> dict:
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx2.AsyncClient(headers=headers, timeout=30) as http_client:
            from mcp.client.streamable_http import streamable_http_client

            async with Client(streamable_http_client(f"{api.api.url}/mcp", http_client=http_client)) as client:
                tools = {t.name for t in (await client.list_tools()).tools}
                jobs = payload(await client.call_tool("list_jobs", {"limit": 5}))
                return {"tools": tools, "jobs": jobs}

    out = in_own_loop(lambda: session("s3cret-key"))
    assert "chat" in out["tools"] and out["jobs"] == []
    with pytest.raises(BaseException) as refused:   # the SDK raises its 401 inside task groups
        in_own_loop(lambda: session("wrong-key"))
    assert "Server returned an error response" in repr(refused.value)


# ---------------------------------------------------------------- hostile arguments, in-process

@pytest.fixture(scope="module")
def local(home):
    engine = Engine(Settings(home=home["folder"]), primary=False, start_threads=False)
    yield engine
    engine.close()


def call_all(engine, calls: list[tuple[str, dict]]) -> list:
    async def session():
        async with Client(build_server(engine, user=LOCAL_ADMIN)) as client:
            return [await client.call_tool(name, arguments) for name, arguments in calls]
    return in_own_loop(session)


def test_hostile_arguments_are_refused_with_a_reason(local, home, tmp_path):
    (home["folder"] / "link.txt").unlink(missing_ok=True)
    outside = tmp_path / "secret.txt"
    outside.write_text("not yours")
    (home["folder"] / "link.txt").symlink_to(outside)
    calls = [
        ("translate", {"path": str(outside), "target": "de"}),                    # absolute, outside
        ("translate", {"path": "link.txt", "target": "de"}),                      # a link pointing out
        ("translate", {"path": "notes.txt", "target": "xx"}),                     # no such language
        ("translate", {"text": "Hi", "path": "notes.txt", "target": "de"}),       # two sources
        ("translate", {"content_base64": "%%%", "filename": "a.txt", "target": "de"}),
        ("ask", {"collection": "../handbook", "question": "why?"}),
        ("ask", {"collection": "handbook", "question": "x" * 5000}),              # over the bound
        ("chat", {"model": home["chat"], "prompt": "hi", "messages": [{"role": "user", "content": "hi"}]}),
        ("chat", {"model": home["chat"], "messages": [{"role": "tool", "content": "hi"}]}),
        ("chat", {"model": "no-such-model", "prompt": "hi"}),
        ("chat", {"model": home["chat"], "prompt": "hi", "max_tokens": 10**6}),
        ("submit_job", {"kind": "shell", "params": {}}),
        ("submit_job", {"kind": "translate", "params": {"input": str(outside), "target": "de"}}),
        ("list_jobs", {"states": ["nonsense"]}),
        ("translation_result", {"job_id": 999999}),
    ]
    results = call_all(local, calls)
    for (name, arguments), result in zip(calls, results):
        assert result.is_error, f"{name} {arguments} was accepted"
        assert "Traceback" not in result.content[0].text
    text = [r.content[0].text for r in results]
    assert "outside" in text[0] and "outside" in text[1] and "xx" in text[2] and "exactly one" in text[3]
    assert "base64" in text[4] and "collection name" in text[5] and "either a prompt or messages" in text[7]
    assert "shell" in text[11] and "outside" in text[12]


def test_resource_names_are_checked(local):
    async def session():
        async with Client(build_server(local, user=LOCAL_ADMIN)) as client:
            errors = []
            for uri in ("llmos://collections/..%2F..%2Fetc", "llmos://collections/NoSuch!"):
                try:
                    await client.read_resource(uri)
                    errors.append(None)
                except Exception as exc:   # a protocol error naming the URI
                    errors.append(str(exc))
            return errors
    assert all(in_own_loop(session))


def test_a_long_document_becomes_a_job(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMOS_TRANSLATE_JOB_SEGMENTS", "1")
    engine = Engine(Settings(home=tmp_path / "home"), primary=False, start_threads=False)
    try:
        queued, jobs, early = call_all(engine, [
            ("translate", {"text": "Good morning.\n\nThe weather is fine.\n", "target": "de"}),
            ("list_jobs", {"kind": "translate"}),
            ("translation_result", {"job_id": 1}),
        ])
    finally:
        engine.close()
    job = payload(queued)
    assert job["job"] == 1 and job["segments"] == 2 and "translation_result" in job["note"]
    assert [(j["id"], j["state"]) for j in payload(jobs)] == [(1, "queued")]
    assert early.is_error and "queued" in early.content[0].text


def test_over_http_each_key_acts_as_its_user(home, tmp_path, monkeypatch):
    """Alice's collection, job and fine-tuned model are hers: bob's key over /mcp reads them as missing, hers
    finds them. A server with no fixed user refuses a call that carries no request user (never an admin)."""
    monkeypatch.setenv("LLMOS_TRANSLATE_JOB_SEGMENTS", "1")   # alice's translation becomes a job
    engine = Engine(Settings(home=tmp_path / "home"), primary=False, start_threads=False)
    try:
        alice, _bob = (engine.accounts.add_user(name, "correct horse") for name in ("alice", "bob"))
        keys = {name: engine.accounts.create_key(name) for name in ("alice", "bob")}
        chat = engine.catalog.register(engine.catalog.resolve(str(home["tiny"]), name="alice-chat"),
                                       owner=alice.id).name
        embed = engine.catalog.register(engine.catalog.resolve(str(home["embedder"]), task=EMBEDDING)).name
        ask.add_files(engine, alice, "handbook", [("leave.txt", LEAVE.encode())], embed_model=embed)
        start_api(engine, "127.0.0.1", 0)
        question = {"collection": "handbook", "question": "How many days of paid leave?"}
        mine = http_session(engine, keys["alice"], [
            ("translate", {"text": "Good morning.\n\nThe weather is fine.\n", "target": "de", "model": chat}),
            ("ask", {**question, "model": chat, "max_tokens": 4}),
            ("list_jobs", {}),
            ("llmos://collections", None),
            ("llmos://models", None),
        ])
        theirs = http_session(engine, keys["bob"], [
            ("ask", question),
            ("list_jobs", {}),
            ("translation_result", {"job_id": 1}),
            ("chat", {"model": chat, "prompt": "hi", "max_tokens": 2}),
            ("llmos://collections", None),
            ("llmos://models", None),
        ])

        async def unknown():
            async with Client(build_server(engine, user=None)) as client:
                return await client.call_tool("list_jobs", {})
        nobody = in_own_loop(unknown)
    finally:
        engine.close()
    job, answer, jobs = (payload(r) for r in mine[:3])
    assert job["job"] == 1 and answer["found"] and answer["citations"][0]["file"] == "leave.txt"
    assert [j["id"] for j in jobs] == [1]
    assert [c["name"] for c in mine[3]] == ["handbook"] and chat in {m["name"] for m in mine[4]}
    asked, listed, result, chatted, collections, models = theirs
    assert collections == [] and chat not in {m["name"] for m in models}
    assert payload(listed) == []
    assert asked.is_error and "no collection" in asked.content[0].text
    assert result.is_error and "no job 1" in result.content[0].text
    assert chatted.is_error and "no model named" in chatted.content[0].text
    assert nobody.is_error and "no LLM OS user" in nobody.content[0].text
