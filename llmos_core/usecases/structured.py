"""Replies as JSON (the Chat page's "reply as JSON"): a schema typed by the user, checked, and turned into sampling
settings whose grammar only lets the model write JSON valid against it (generation/constraints.py); and a
reply that is a JSON object shown formatted. The API's response_format is the same grammar."""
from __future__ import annotations

import json
from dataclasses import replace

from ..errors import InvalidInput
from ..generation import SamplingParams, constraints

ANY_OBJECT = "Any JSON object"
EXAMPLES: dict[str, dict] = {
    ANY_OBJECT: {"type": "object"},
    "Person": {"type": "object", "properties": {
        "name": {"type": "string"}, "age": {"type": "integer", "minimum": 0},
        "email": {"type": "string", "format": "email"}}, "required": ["name", "age"], "additionalProperties": False},
    "Sentiment": {"type": "object", "properties": {
        "sentiment": {"enum": ["positive", "neutral", "negative"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1}},
        "required": ["sentiment", "confidence"], "additionalProperties": False},
    "To-do list": {"type": "object", "properties": {"items": {"type": "array", "maxItems": 10, "items": {
        "type": "object", "properties": {"task": {"type": "string"}, "done": {"type": "boolean"}},
        "required": ["task", "done"], "additionalProperties": False}}}, "required": ["items"]},
}
NOTE = "Reply with one JSON object only."


def example(name: str) -> str:
    """An example schema as the text a schema box shows."""
    return json.dumps(EXAMPLES[name], indent=2)


def read_schema(text: str) -> dict:
    """The schema box's text -> a schema; a clear InvalidInput when it is not one."""
    try:
        schema = json.loads(text or "")
    except ValueError as exc:
        raise InvalidInput(f"the schema is not JSON: {exc}", "fix the schema, or pick one of the examples") from exc
    if not isinstance(schema, dict):
        raise InvalidInput("the schema must be a JSON object", 'e.g. {"type": "object", "properties": {...}}')
    return schema


def constrain(params: SamplingParams, schema_text: str) -> SamplingParams:
    """`params` whose reply must be JSON valid against the schema (features it cannot enforce: refused when the
    model compiles it, by name)."""
    return replace(params, grammar=constraints.json_schema_grammar(read_schema(schema_text)))


def system_prompt(system: str, schema_text: str) -> str:
    """The system prompt with the schema in it: the grammar makes the reply valid, the prompt makes it apt."""
    schema = read_schema(schema_text)
    note = NOTE if schema == EXAMPLES[ANY_OBJECT] else f"{NOTE} It follows this JSON schema:\n{json.dumps(schema)}"
    if note in system:   # a saved conversation's system prompt, reopened: it holds the note already
        return system
    return f"{system.strip()}\n\n{note}".strip()


def formatted(text: str) -> str | None:
    """A reply that is a whole JSON object or array, indented; None for any other text."""
    stripped = text.strip()
    if not stripped.startswith(("{", "[")):
        return None
    try:
        return json.dumps(json.loads(stripped), indent=2, ensure_ascii=False)
    except ValueError:
        return None
