"""Tool calls: the prompt that offers tools to a model, the grammar its reply must follow, and the reader that
turns that reply back into text and calls as it streams.

The embedded models' templates have no tool syntax (SmolLM2's is plain ChatML, Gemma 3 270M is a base model
with no template), so every model is offered tools the same documented way, as Hermes-style models are:
a system prompt lists the tools as JSON and asks for

    <tool_call>{"name":"NAME","arguments":{...}}</tool_call>

one after another for several calls. The model's earlier calls go back into the conversation in that
form and each tool's result as a user turn `<tool_response>{"name":..., "content":...}</tool_response>`.
The reply is constrained by a grammar (constraints.py): with tool_choice "required" or a named function
it can only be calls (of that function), each call's arguments valid against its tool's parameters;
with "auto" it is free text or calls, never a malformed call.
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field

from ..errors import InvalidInput
from .constraints import JSON_OPTIONS, MAX_SCHEMA_CHARS, closed_objects, lark_grammar

OPEN, CLOSE = "<tool_call>", "</tool_call>"
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")     # OpenAI's rule for function names
MAX_TOOLS = 128                                    # as OpenAI
PROMPT = ("You can call tools. To call one, reply with nothing but\n"
          '<tool_call>{{"name":"<tool name>","arguments":<its arguments as a JSON object>}}</tool_call>\n'
          "{several}A tool's result comes back to you as <tool_response>...</tool_response>; "
          "use it to answer the user.\n{must}Tools:\n{tools}")


@dataclass
class Tool:
    name: str
    description: str = ""
    parameters: dict = field(default_factory=lambda: {"type": "object", "properties": {}})


def check_tools(tools: list[Tool]) -> None:
    names = [t.name for t in tools]
    if len(tools) > MAX_TOOLS:
        raise InvalidInput(f"{len(tools)} tools were sent; at most {MAX_TOOLS}", "send fewer tools")
    for tool in tools:
        if not NAME_RE.match(tool.name):
            raise InvalidInput(f"tool name {tool.name[:80]!r} is not allowed",
                               "use letters, digits, '_' and '-', at most 64 characters")
        if not isinstance(tool.parameters, dict):
            raise InvalidInput(f"the parameters of tool {tool.name} must be a JSON schema object")
    if len(set(names)) != len(names):
        raise InvalidInput("two tools have the same name", "give each tool its own name")
    if len(json.dumps([t.parameters for t in tools])) > MAX_SCHEMA_CHARS:
        raise InvalidInput(f"the tools' parameters hold more than {MAX_SCHEMA_CHARS:,} characters",
                           "send fewer or smaller tools")


def system_prompt(tools: list[Tool], choice: str, parallel: bool) -> str:
    """The tools, offered in the system prompt. `choice`: auto, required, or a tool's name."""
    listed = "\n".join(json.dumps({"name": t.name, "description": t.description, "parameters": t.parameters})
                       for t in tools)
    must = ("" if choice == "auto" else "Call a tool now.\n" if choice == "required"
            else f"Call the tool {choice} now.\n")
    several = "For several calls, write them one after another.\n" if parallel else "Call at most one tool.\n"
    return PROMPT.format(several=several, must=must, tools=listed)


def grammar(tools: list[Tool], choice: str, parallel: bool, reply_schema: dict | None = None) -> str:
    """llguidance's grammar (Lark, with %json for each tool's arguments) for a reply to `choice`; with "auto",
    a reply that is not a call is free text, or JSON valid against `reply_schema` when one is given."""
    offered = tools if choice in ("auto", "required") else [t for t in tools if t.name == choice]
    if not offered:
        raise InvalidInput(f"tool_choice names {choice!r}, which is not among the tools", "name one of the tools")
    rules = []
    for i, tool in enumerate(offered):
        schema = {**closed_objects(tool.parameters), "x-guidance": JSON_OPTIONS}
        rules.append(f'tool{i}: "{{\\"name\\":\\"{tool.name}\\",\\"arguments\\":" %json {json.dumps(schema)} "}}"')
    # A named tool_choice asks for that call, once: a small model allowed more repeats the same call until
    # max_tokens (SmolLM2 under LangChain's bind_tools(tool_choice=NAME), 2026-12-07).
    calls = 'call ("\\n"? call)*' if parallel and choice in ("auto", "required") else "call"
    if choice != "auto":
        start = "start: calls"
    elif reply_schema is None:
        start = "start: TEXT | calls"
        # Text, unless it starts as a call: a call is never half text. (No space before a call: the lexer is
        # greedy, and a space that text and a call could both begin with would be read as text.)
        rules.append(f"TEXT: /(.|\\n)+/ & ~/{re.escape(OPEN)}(.|\\n)*/")
    else:
        start = "start: reply | calls"
        rules.append(f"reply: %json {json.dumps({**closed_objects(reply_schema), 'x-guidance': JSON_OPTIONS})}")
    return lark_grammar("\n".join([
        start,
        f"calls: {calls}",
        f'call: "{OPEN}" ({" | ".join(f"tool{i}" for i in range(len(offered)))}) "{CLOSE}"',
        *rules]))


# ---------------------------------------------------------------- the conversation, for the model


def fold_messages(messages: list[dict], prompt: str | None) -> list[dict]:
    """OpenAI's messages (assistant turns with tool_calls, tool results) -> plain system/user/assistant turns
    in the generic tool format; `prompt` (the tools) joins the system prompt."""
    names = {}
    out: list[dict] = []
    for m in messages:
        role, content = m["role"], m.get("content") or ""
        if role == "assistant" and m.get("tool_calls"):
            calls = []
            for call in m["tool_calls"]:
                names[call["id"]] = call["name"]
                calls.append(OPEN + json.dumps({"name": call["name"], "arguments": _arguments(call)},
                                               separators=(",", ":")) + CLOSE)
            out.append({"role": "assistant", "content": (content + "\n" if content else "") + "\n".join(calls)})
        elif role == "tool":
            result = "<tool_response>" + json.dumps(
                {"name": names.get(m.get("tool_call_id"), ""), "content": content}) + "</tool_response>"
            if out and out[-1]["role"] == "user" and out[-1]["content"].startswith("<tool_response>"):
                out[-1]["content"] += "\n" + result      # several results: one turn
            else:
                out.append({"role": "user", "content": result})
        else:
            out.append({"role": role, "content": content})
    if prompt:
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": (out[0]["content"] + "\n\n" + prompt).strip()}
        else:
            out.insert(0, {"role": "system", "content": prompt})
    return out


def _arguments(call: dict):
    try:
        return json.loads(call.get("arguments") or "{}")
    except ValueError:
        return call.get("arguments")     # a client's own text: sent back as it is


# ---------------------------------------------------------------- the reply, for the client


@dataclass
class ToolCall:
    name: str
    arguments: str = ""
    id: str = field(default_factory=lambda: "call_" + uuid.uuid4().hex[:24])


class ToolCallReader:
    """A reply written under `grammar`, read as it streams. `feed(text)` -> events, in order:
    ("text", s), ("call", index) once a call's name is known, ("arguments", index, s) for each piece of its
    arguments. Text is held only while it might still be the start of a call."""

    def __init__(self, text_allowed: bool):
        self.mode = "start" if text_allowed else "calls"
        self.buffer = ""
        self.calls: list[ToolCall] = []
        self._depth = 0
        self._in_string = self._escaped = False

    def feed(self, text: str) -> list[tuple]:
        self.buffer += text
        events: list[tuple] = []
        while self.buffer:
            before = (self.mode, len(self.buffer))
            if self.mode == "start":
                head = self.buffer
                if head.startswith(OPEN):
                    self.mode = "calls"
                elif not head or OPEN.startswith(head):
                    break                                   # might still be a call: wait
                else:
                    self.mode = "text"
            elif self.mode == "text":
                events.append(("text", self.buffer))
                self.buffer = ""
            elif self.mode == "calls":
                self._read_name(events)
            elif self.mode == "arguments":
                self._read_arguments(events)
            elif self.mode == "tail":
                if len(self.buffer) < len("}" + CLOSE):
                    break
                self.buffer, self.mode = self.buffer[len("}" + CLOSE):], "calls"
            if (self.mode, len(self.buffer)) == before:
                break                                       # waiting for more text
        return events

    def _read_name(self, events: list[tuple]) -> None:
        head = self.buffer.lstrip()
        prefix = OPEN + '{"name":"'
        end = head.find('"', len(prefix))
        after = '","arguments":'
        if not head.startswith(prefix) or end < 0 or len(head) < end + len(after):
            return
        self.calls.append(ToolCall(head[len(prefix):end]))
        events.append(("call", len(self.calls) - 1))
        self.buffer, self.mode = head[end + len(after):], "arguments"
        self._depth, self._in_string, self._escaped = 0, False, False

    def _read_arguments(self, events: list[tuple]) -> None:
        """The arguments' JSON, up to the brace that closes it (strings and escapes skipped over)."""
        for i, char in enumerate(self.buffer):
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif char == "\\":
                    self._escaped = True
                elif char == '"':
                    self._in_string = False
            elif char == '"':
                self._in_string = True
            elif char in "{[":
                self._depth += 1
            elif char in "}]":
                self._depth -= 1
                if self._depth == 0:
                    self._emit(events, self.buffer[:i + 1])
                    self.buffer, self.mode = self.buffer[i + 1:], "tail"
                    return
        self._emit(events, self.buffer)
        self.buffer = ""

    def _emit(self, events: list[tuple], piece: str) -> None:
        if piece:
            self.calls[-1].arguments += piece
            events.append(("arguments", len(self.calls) - 1, piece))

    def finish(self) -> list[tuple]:
        """The end of the reply: text still held (a reply that only looked like the start of a call) goes out."""
        if self.mode == "start" and self.buffer:
            text, self.buffer, self.mode = self.buffer, "", "text"
            return [("text", text)]
        return []
