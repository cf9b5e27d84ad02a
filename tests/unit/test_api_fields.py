"""Every field of OpenAI's chat and completions requests either works or is refused: this walks the lists (as
of the openai package's own request types) against the real server on 127.0.0.1. A refused field answers
400 and names itself; so does a field OpenAI does not have. No model is loaded: refusals come first."""
from __future__ import annotations

import http.client
import json
import typing

import openai
import pytest

from llmos_core.api.server import start_api
from llmos_core.api.schemas import REFUSED, ChatRequest, CompletionRequest
from llmos_core.engine import Engine
from llmos_core.settings import Settings

# Fields that work (or, for the identifiers, are accepted and change no reply: see README's API section).
CHAT_WORKS = {"messages", "model", "max_completion_tokens", "max_tokens", "n", "parallel_tool_calls",
              "response_format", "seed", "stop", "stream", "stream_options", "temperature", "tool_choice", "tools",
              "top_p", "user", "safety_identifier", "prompt_cache_key"}
COMPLETION_WORKS = {"model", "prompt", "max_tokens", "n", "seed", "stop", "stream", "stream_options",
                    "temperature", "top_p", "user"}
# A value each refused field is refused with.
REFUSED_VALUES = {
    "n": 2, "logprobs": True, "top_logprobs": 2, "logit_bias": {"50256": -100}, "frequency_penalty": 0.5,
    "presence_penalty": 0.5, "audio": {"voice": "alloy", "format": "wav"}, "modalities": ["text", "audio"],
    "prediction": {"type": "content", "content": "x"}, "reasoning_effort": "low", "verbosity": "low",
    "web_search_options": {"search_context_size": "low"}, "functions": [{"name": "f"}], "function_call": "auto",
    "store": True, "metadata": {"a": "b"}, "service_tier": "flex", "best_of": 2, "moderation": {"model": "x"}, "prompt_cache_options": {"a": 1},
    "prompt_cache_retention": "24h", "echo": True, "suffix": "end",
}


def openai_fields(create) -> set[str]:
    """The body fields of an openai resource's create(): its keyword arguments, less the transport's own."""
    transport = {"extra_headers", "extra_query", "extra_body", "timeout", "self"}
    return set(typing.get_type_hints(create)) - transport - {"return"}


@pytest.fixture(scope="module")
def engine(tmp_path_factory, tiny_causal):
    eng = Engine(Settings(home=tmp_path_factory.mktemp("fields-home")), primary=False, start_threads=False)
    eng.catalog.register(eng.catalog.resolve(str(tiny_causal)))
    start_api(eng, "127.0.0.1", 0)
    yield eng
    eng.close()


def post(engine, path: str, body: dict) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", engine.api.port, timeout=60)
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def test_every_openai_field_is_known_and_either_works_or_is_refused():
    from openai.resources.chat.completions import Completions as Chat
    from openai.resources.completions import Completions

    for create, model, works in ((Chat.create, ChatRequest, CHAT_WORKS),
                                 (Completions.create, CompletionRequest, COMPLETION_WORKS)):
        fields = openai_fields(create)
        assert fields, "the openai package's create() lost its keyword arguments"
        known = set(model.model_fields) | {"schema"}
        for name in fields:
            assert name in works or name in REFUSED, f"{model.__name__}: {name} neither works nor is refused"
            assert name in known, f"{model.__name__} does not declare {name}"


@pytest.mark.parametrize("field", sorted(REFUSED))
def test_each_refused_field_answers_400_naming_it(engine, tiny_causal, field):
    model = engine.catalog.resolve(str(tiny_causal)).name
    chat = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    completion = {"model": model, "prompt": "hi"}
    bodies = [(path, body) for path, body, declared in (("/v1/chat/completions", chat, ChatRequest),
                                                        ("/v1/completions", completion, CompletionRequest))
              if field in declared.model_fields]
    assert bodies
    for path, body in bodies:
        status, answer = post(engine, path, {**body, field: REFUSED_VALUES[field]})
        assert status == 400, (path, field, answer)
        assert field in answer["error"]["message"]


def test_a_field_openai_does_not_have_is_refused_by_name(engine, tiny_causal):
    model = engine.catalog.resolve(str(tiny_causal)).name
    status, answer = post(engine, "/v1/chat/completions", {"model": model, "messages": [
        {"role": "user", "content": "hi"}], "mirostat": 2})
    assert status == 400 and "mirostat" in answer["error"]["message"]
    client = openai.OpenAI(base_url=f"{engine.api.url}/v1", api_key="x", max_retries=0, timeout=60)
    with pytest.raises(openai.BadRequestError, match="logprobs"):
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], logprobs=True)
