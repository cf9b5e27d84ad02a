"""Constrained decoding (generation/constraints.py) on the transformers runner with a tiny random model: a random
model writes valid JSON only because every row is masked, so these tests see the mask at work. Rows with
different schemas share one batch; a schema feature that cannot be enforced is refused, by name."""
from __future__ import annotations

import json
import threading

import pytest

from llmos_core.engine import Engine
from llmos_core.errors import InvalidInput
from llmos_core.generation import SamplingParams, constraints
from llmos_core.settings import Settings

USER = [{"role": "user", "content": "Hello, how are you today?"}]
# Bounded on every side, so a random model's reply always ends within max_new_tokens.
PERSON = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 6}, "age": {"type": "integer", "minimum": 0, "maximum": 120},
    "kind": {"enum": ["fox", "dog"]}, "ok": {"type": "boolean"}}, "required": ["name", "age", "kind", "ok"],
    "additionalProperties": False}


@pytest.fixture(scope="module")
def engine(tmp_path_factory, tiny_causal):
    eng = Engine(Settings(home=tmp_path_factory.mktemp("constraints-home")), primary=False, start_threads=False)
    eng.catalog.register(eng.catalog.resolve(str(tiny_causal)))
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def model(engine, tiny_causal):
    return engine.catalog.resolve(str(tiny_causal)).name


def params(grammar: str | None, seed: int = 0) -> SamplingParams:
    return SamplingParams(do_sample=True, temperature=1.0, max_new_tokens=50, seed=seed, grammar=grammar)


def check_person(text: str) -> dict:
    value = json.loads(text)
    assert set(value) == {"name", "age", "kind", "ok"} and len(value["name"]) <= 6
    assert 0 <= value["age"] <= 120 and value["kind"] in ("fox", "dog") and isinstance(value["ok"], bool)
    return value


def test_a_random_model_writes_valid_json_only_under_the_grammar(engine, model):
    free = engine.chat.generate(model, USER, params(None), backend="transformers")
    with pytest.raises(ValueError):
        json.loads(free.text)                       # without the mask: noise
    for seed in range(2):
        result = engine.chat.generate(model, USER, params(constraints.json_schema_grammar(PERSON), seed),
                                      backend="transformers")
        check_person(result.text)
        assert result.stats["finish_reason"] == "stop"


def test_rows_with_different_schemas_decode_in_one_batch(engine, model):
    runner_before = engine.chat._runners
    schemas = [PERSON, {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9}},
                        "required": ["n"], "additionalProperties": False}, None]
    results: dict[int, str] = {}

    def one(i: int, schema) -> None:
        grammar = constraints.json_schema_grammar(schema) if schema else None
        results[i] = engine.chat.generate(model, USER, params(grammar, seed=i), backend="transformers").text

    threads = [threading.Thread(target=one, args=(i, s)) for i, s in enumerate(schemas)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    check_person(results[0])
    assert 0 <= json.loads(results[1])["n"] <= 9
    assert results[2]                                # the free row kept its own (unmasked) sampling
    runner = next(r for (name, backend), r in runner_before.items() if name == model)
    assert runner.batching and runner.peak_batch >= 2


def test_compiled_grammars_are_cached_per_model(engine, model):
    runner = next(r for (name, _), r in engine.chat._runners.items() if name == model)
    grammars = constraints.grammars_for(runner)
    grammar = constraints.json_schema_grammar(PERSON)
    assert grammars.compile(grammar) is grammars.compile(grammar)
    assert constraints.grammars_for(runner) is grammars


@pytest.mark.parametrize("schema, named", [
    ({"type": "array", "uniqueItems": True}, "uniqueItems"),
    ({"type": "object", "properties": {"a": {"not": {"type": "string"}}}}, "not"),
    ({"type": "string", "pattern": "(?=a)b"}, "look-around"),
    ({"type": "string", "minLength": 5, "maxLength": 2}, "minLength"),
])
def test_a_feature_that_cannot_be_enforced_is_refused_by_name(engine, model, schema, named):
    with pytest.raises(InvalidInput, match=named):
        engine.chat.generate(model, USER, params(constraints.json_schema_grammar(schema)), backend="transformers")


def test_schemas_are_checked_for_shape_and_size():
    with pytest.raises(InvalidInput, match="must be an object"):
        constraints.json_schema_grammar(["not", "a", "schema"])
    with pytest.raises(InvalidInput, match="characters"):
        constraints.json_schema_grammar({"description": "x" * (constraints.MAX_SCHEMA_CHARS + 1)})


def test_an_object_that_names_its_properties_gets_no_others_unless_its_schema_says_so(engine, model):
    # LangChain's bind_tools sends parameters without additionalProperties: SmolLM2 then wrote invented
    # properties until max_tokens. Closed as llama.cpp's converter does; an explicit choice is kept.
    open_person = {key: value for key, value in PERSON.items() if key != "additionalProperties"}
    nested = {"type": "object", "properties": {"who": open_person, "tags": {"type": "array", "items": open_person}},
              "$defs": {"p": open_person}, "anyOf": [open_person]}
    closed = constraints.closed_objects(nested)
    assert closed["additionalProperties"] is False
    assert closed["properties"]["who"]["additionalProperties"] is False
    assert closed["properties"]["tags"]["items"]["additionalProperties"] is False
    assert closed["$defs"]["p"]["additionalProperties"] is False and closed["anyOf"][0]["additionalProperties"] is False
    assert "additionalProperties" not in nested and "additionalProperties" not in open_person   # not changed in place
    kept = {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "integer"}}
    assert constraints.closed_objects(kept) == kept
    assert "additionalProperties" not in constraints.closed_objects({"type": "object"})   # json_object: any object
    for seed in range(2):                                       # a random model under the open schema: no extra keys
        check_person(engine.chat.generate(model, USER, params(constraints.json_schema_grammar(open_person), seed),
                                          backend="transformers").text)
    deep: dict = {"type": "object", "properties": {}}
    node = deep
    for _ in range(constraints.MAX_SCHEMA_DEPTH + 2):
        node["properties"]["x"] = {"type": "object", "properties": {}}
        node = node["properties"]["x"]
    with pytest.raises(InvalidInput, match="nests deeper"):
        constraints.json_schema_grammar(deep)


def test_the_grammar_travels_as_data_and_the_compiled_one_does_not():
    p = params(constraints.json_object_grammar())
    values = p.to_dict()
    assert values["grammar"] and "constraint" not in values
    json.dumps(values)
