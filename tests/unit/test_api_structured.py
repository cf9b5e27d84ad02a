"""Structured output and tool calls through the API with the official openai package, against the real server
on 127.0.0.1 and a tiny random model: it writes valid JSON and well-formed calls only because each reply is
constrained by grammar, so every check here is the grammar's doing. The embedded models' runs are in
test_api_structured_embedded.py."""
from __future__ import annotations

import json
from typing import Literal

import openai
import pytest
from pydantic import BaseModel, Field

from llmos_core.api.server import start_api
from llmos_core.engine import Engine
from llmos_core.generation.tools import ToolCallReader
from llmos_core.settings import Settings

import tiny_models

ASK = [{"role": "user", "content": "Hello, how are you today?"}]


class Pet(BaseModel):
    name: str = Field(max_length=8)
    kind: Literal["fox", "dog"]
    age: int = Field(ge=0, le=30)


WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 10}},
                          "required": ["city"], "additionalProperties": False}}}
ADD = {"type": "function", "function": {"name": "add", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 99},
                                     "b": {"type": "integer", "minimum": 0, "maximum": 99}},
    "required": ["a", "b"], "additionalProperties": False}}}


def make_roomy_causal_lm(folder):
    """The tiny chat model with room for a tool prompt: a 1,024-token context (tiny_models' has 256)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tokenizer = tiny_models.make_tokenizer(chat_template=True)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    eng = Engine(Settings(home=tmp_path_factory.mktemp("structured-home")), primary=False, start_threads=False)
    folder = make_roomy_causal_lm(tmp_path_factory.mktemp("roomy-causal"))
    name = eng.catalog.register(eng.catalog.resolve(str(folder))).name
    start_api(eng, "127.0.0.1", 0)
    client = openai.OpenAI(base_url=f"{eng.api.url}/v1", api_key="x", max_retries=0, timeout=120)
    yield client, name
    eng.close()


def check_call(call, tool: dict) -> dict:
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == tool["function"]["name"]
    arguments = json.loads(call.function.arguments)
    assert set(arguments) == set(tool["function"]["parameters"]["required"])
    return arguments


def test_parse_with_a_pydantic_model_and_json_object(served):
    client, model = served
    for seed in range(2):
        reply = client.chat.completions.parse(model=model, messages=ASK, response_format=Pet, seed=seed,
                                              temperature=1.0, max_tokens=60)
        assert isinstance(reply.choices[0].message.parsed, Pet)
    text = client.chat.completions.create(model=model, messages=ASK, response_format={"type": "json_object"},
                                          seed=3, max_tokens=40, temperature=1.0,
                                          extra_body={"top_k": 5})
    if text.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(text.choices[0].message.content), dict)
    completion = client.completions.create(model=model, prompt="The pet:", max_tokens=60, seed=1, extra_body={
        "response_format": {"type": "json_schema", "json_schema": {"name": "pet", "schema": Pet.model_json_schema()}}})
    Pet.model_validate_json(completion.choices[0].text)


def test_named_and_required_tool_calls_have_valid_arguments(served):
    client, model = served
    named = client.chat.completions.create(model=model, messages=ASK, tools=[WEATHER, ADD], max_tokens=100,
                                           tool_choice={"type": "function", "function": {"name": "add"}}, seed=1,
                                           parallel_tool_calls=False)
    choice = named.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    arguments = check_call(choice.message.tool_calls[0], ADD)
    assert all(0 <= arguments[k] <= 99 for k in "ab")
    required = client.chat.completions.create(model=model, messages=ASK, tools=[WEATHER, ADD], max_tokens=100,
                                              tool_choice="required", parallel_tool_calls=False, seed=2)
    calls = required.choices[0].message.tool_calls
    assert len(calls) == 1
    check_call(calls[0], {"get_weather": WEATHER, "add": ADD}[calls[0].function.name])


def test_a_streamed_tool_call_reassembles_to_the_same_call(served):
    client, model = served
    ask = dict(model=model, messages=ASK, tools=[WEATHER], tool_choice="required", max_tokens=100, temperature=0,
               parallel_tool_calls=False)
    whole = client.chat.completions.create(**ask).choices[0].message.tool_calls[0]
    names, arguments, ids, finish = [], "", set(), None
    for chunk in client.chat.completions.create(stream=True, **ask):
        if not chunk.choices:
            continue
        finish = chunk.choices[0].finish_reason or finish
        for delta in chunk.choices[0].delta.tool_calls or []:
            assert delta.index == 0
            if delta.id:
                ids.add(delta.id)
            if delta.function and delta.function.name:
                names.append(delta.function.name)
            arguments += (delta.function.arguments or "") if delta.function else ""
    assert names == ["get_weather"] and len(ids) == 1          # the name once, not in every chunk
    assert json.loads(arguments) == json.loads(whole.function.arguments) and finish == "tool_calls"


def test_a_two_step_tool_loop(served):
    client, model = served
    messages = list(ASK)
    first = client.chat.completions.create(model=model, messages=messages, tools=[ADD], tool_choice="required",
                                           max_tokens=100, seed=4, parallel_tool_calls=False)
    call = first.choices[0].message.tool_calls[0]
    arguments = check_call(call, ADD)
    messages += [first.choices[0].message,
                 {"role": "tool", "tool_call_id": call.id, "content": str(arguments["a"] + arguments["b"])}]
    final = client.chat.completions.create(model=model, messages=messages, tools=[ADD], tool_choice="none",
                                           max_tokens=8, seed=4)
    assert final.choices[0].message.tool_calls is None and final.choices[0].message.content
    assert final.choices[0].finish_reason in ("stop", "length")


def test_what_cannot_be_enforced_is_a_400_that_names_it(served):
    client, model = served
    with pytest.raises(openai.BadRequestError, match="uniqueItems"):
        client.chat.completions.create(model=model, messages=ASK, response_format={"type": "json_schema", "json_schema": {
            "name": "x", "schema": {"type": "array", "uniqueItems": True}}})
    with pytest.raises(openai.BadRequestError, match="not among the tools"):
        client.chat.completions.create(model=model, messages=ASK, tools=[ADD],
                                       tool_choice={"type": "function", "function": {"name": "nope"}})


def test_the_reader_splits_text_and_calls_as_they_stream():
    reply = '<tool_call>{"name":"f","arguments":{"s":"}<\\"]"}}</tool_call>\n<tool_call>{"name":"g","arguments":{}}</tool_call>'
    reader = ToolCallReader(text_allowed=True)
    events = [e for i in range(len(reply)) for e in reader.feed(reply[i])] + reader.finish()
    assert [(c.name, c.arguments) for c in reader.calls] == [("f", '{"s":"}<\\"]"}'), ("g", "{}")]
    assert [e for e in events if e[0] == "call"] == [("call", 0), ("call", 1)]
    text = ToolCallReader(text_allowed=True)
    assert text.feed("<tool") == [] and text.feed(" no") == [("text", "<tool no")]
    held = ToolCallReader(text_allowed=True)
    assert held.feed("<tool_") == [] and held.finish() == [("text", "<tool_")]
