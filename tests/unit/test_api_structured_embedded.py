"""The issue's acceptance checks, on the two embedded models (llama.cpp, as the API serves them here), with the
official openai package against the real server on 127.0.0.1: parse() with a Pydantic model, json_object,
a named tool call and `required` with valid arguments, and a two-step tool loop; and langchain-openai's
with_structured_output and bind_tools. Three parse() requests each here
(the bench, bench/structured.py, runs the issue's twenty: 20/20 on both)."""
from __future__ import annotations

import json

import pytest
from llamacpp_required import binding  # noqa: F401 (a fixture)
from pydantic import BaseModel

from llmos_core.api.server import start_api
from llmos_core.engine import Engine
from llmos_core.models.catalog import EMBEDDED
from llmos_core.settings import Settings

pytestmark = pytest.mark.slow
RUNS = 3


class Animal(BaseModel):
    name: str
    legs: int
    can_fly: bool


# Closed, as OpenAI's strict mode and openai.pydantic_function_tool write tools: with additionalProperties left
# open, the base model gemma-3-270m sometimes adds properties of its own until max_tokens (valid, but cut).
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                          "additionalProperties": False}}}


@pytest.fixture(scope="module")
def client(embedded_home):
    import openai

    from llmos_core.models import llamacpp

    if not llamacpp.availability()[0]:
        pytest.skip("llama-cpp-python is not available")
    engine = Engine(Settings(home=embedded_home, threads=1), primary=False, start_threads=False)
    api = start_api(engine, "127.0.0.1", 0)
    yield openai.OpenAI(base_url=f"{api.url}/v1", api_key="x", max_retries=0, timeout=300)
    engine.close()


@pytest.mark.parametrize("model", sorted(EMBEDDED))
def test_structured_replies_and_tool_calls_on_each_embedded_model(binding, client, model):
    ask = [{"role": "user", "content": "Describe a cat."}]
    for seed in range(RUNS):
        reply = client.chat.completions.parse(model=model, messages=ask, response_format=Animal, seed=seed,
                                              max_tokens=80)
        assert isinstance(reply.choices[0].message.parsed, Animal), reply.choices[0].message.content
    obj = client.chat.completions.create(model=model, messages=ask, response_format={"type": "json_object"},
                                         seed=1, max_tokens=80)
    if obj.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(obj.choices[0].message.content), dict)
    weather = [{"role": "user", "content": "What is the weather in Paris?"}]
    for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        reply = client.chat.completions.create(model=model, messages=weather, tools=[WEATHER], tool_choice=choice,
                                               seed=2, max_tokens=120, parallel_tool_calls=False)
        assert reply.choices[0].finish_reason == "tool_calls", reply.choices[0].message
        call = reply.choices[0].message.tool_calls[0]
        assert call.function.name == "get_weather"
        assert isinstance(json.loads(call.function.arguments)["city"], str)


def test_a_two_step_tool_loop_ends_in_an_answer(binding, client):
    model = "smollm2-135m-instruct"
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER], tool_choice="required",
                                           seed=3, max_tokens=60, parallel_tool_calls=False)
    call = first.choices[0].message.tool_calls[0]
    messages += [first.choices[0].message, {"role": "tool", "tool_call_id": call.id,
                                            "content": json.dumps({"city": "Paris", "sky": "sunny", "celsius": 21})}]
    final = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER], tool_choice="none",
                                           seed=3, max_tokens=60)
    answer = final.choices[0].message
    assert answer.tool_calls is None and answer.content and final.choices[0].finish_reason in ("stop", "length")


def test_langchain_openai_gets_structured_output_and_tool_calls(binding, client):
    """A framework no one here wrote, pointed at the server by its base URL: langchain-openai's
    with_structured_output (a JSON schema) and bind_tools (a forced tool call, arguments parsed by LangChain)."""
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        return f"sunny in {city}"

    llm = ChatOpenAI(model="smollm2-135m-instruct", base_url=str(client.base_url), api_key="x", temperature=0,
                     max_tokens=80, max_retries=0, timeout=300)
    animal = llm.with_structured_output(Animal).invoke("Describe a cat.")
    assert isinstance(animal, Animal)
    message = llm.bind_tools([get_weather], tool_choice="get_weather").invoke("What is the weather in Paris?")
    assert [call["name"] for call in message.tool_calls] == ["get_weather"]
    assert isinstance(message.tool_calls[0]["args"]["city"], str)
    assert get_weather.invoke(message.tool_calls[0]["args"]).startswith("sunny in")
