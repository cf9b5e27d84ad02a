"""Request bodies of the API in OpenAI's shapes, and how they map to LLM OS's SamplingParams.

Every field either works or is refused: the fields of OpenAI's chat and completions requests that LLM OS
does not implement (n > 1, logprobs, logit_bias, audio, ...: REFUSED) answer 400 with the field named and
what to do instead, and so does a field OpenAI does not have. Two extensions, as vLLM and llama.cpp's
server have them: `top_k` and `repetition_penalty`; and `response_format` works on completions too.
response_format and tools are enforced by grammar (generation/constraints.py, generation/tools.py).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ..errors import InvalidInput
from ..generation import SamplingParams, constraints, tools

MAX_TOKENS = 8192          # SamplingParams' own limit
MAX_STOP = 4               # as OpenAI
MAX_STOP_CHARS = 200       # a stop sequence is a marker, not a text; each is checked against every token
MAX_EMBED_INPUTS = 2048    # as OpenAI
JSON_NOTE = "Reply with one JSON object only."


def _utf8(text: str) -> str:
    """JSON may carry lone surrogates ("\\ud800"); tokenizers cannot take them, so they are a bad request."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("the text is not valid Unicode (a lone surrogate)") from exc
    return text


Text = Annotated[str, AfterValidator(_utf8)]
StopText = Annotated[str, Field(max_length=MAX_STOP_CHARS), AfterValidator(_utf8)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class StreamOptions(_Body):
    include_usage: bool = False


class TextPart(_Body):
    type: Literal["text"] = "text"
    text: Text


class CallFunction(_Body):
    name: Text = Field(max_length=64)
    arguments: Text = ""


class MessageToolCall(_Body):
    """A call the model made earlier, sent back with the conversation."""
    id: Text = Field(max_length=200)
    type: Literal["function"] = "function"
    function: CallFunction


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Text | list[TextPart] | None = None
    tool_calls: list[MessageToolCall] | None = Field(None, max_length=128)
    tool_call_id: Text | None = Field(None, max_length=200)
    name: Text | None = Field(None, max_length=64)
    # What the openai package writes back when a reply's message is appended as it is: only empty is accepted.
    refusal: None = None
    audio: None = None
    function_call: None = None
    annotations: list[Any] | None = Field(None, max_length=0)

    def as_dict(self) -> dict:
        """OpenAI's 'developer' is a system prompt; text parts are joined; calls and results as tools.py reads them."""
        if self.name is not None and self.role != "tool":
            raise InvalidInput("a message's name is not supported", "leave name out of the messages")
        if self.role == "tool" and not self.tool_call_id:
            raise InvalidInput("a tool message needs the tool_call_id of the call it answers")
        content = self.content or ""
        if isinstance(content, list):
            content = "".join(part.text for part in content)
        out = {"role": "system" if self.role == "developer" else self.role, "content": content}
        if self.tool_calls:
            out["tool_calls"] = [{"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
                                 for c in self.tool_calls]
        if self.role == "tool":
            out["tool_call_id"] = self.tool_call_id
        return out


class JsonSchemaFormat(_Body):
    name: Text = Field("response", max_length=64)
    description: Text | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Body):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    def reply_schema(self) -> dict | None:
        """The schema a JSON reply follows ({"type": "object"} for json_object); None: free text."""
        if self.type == "text":
            return None
        if self.type == "json_object":
            return {"type": "object"}
        if self.json_schema is None:
            raise InvalidInput("response_format json_schema needs its json_schema",
                               'send {"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}')
        return self.json_schema.schema_ if self.json_schema.schema_ is not None else {}


class FunctionDef(_Body):
    name: Text = Field(min_length=1, max_length=64)
    description: Text | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None     # every call is enforced by grammar, strict or not


class ToolDef(_Body):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(_Body):
    name: Text = Field(max_length=64)


class NamedToolChoice(_Body):
    type: Literal["function"]
    function: NamedFunction


def _off(value) -> bool:
    return value is None or value is False or value == 0 or value in ("", [], {})


# Fields of OpenAI's requests that LLM OS does not implement: field -> (what it may be, hint). Any other value
# is a 400 that names the field (tests/unit/test_api_fields.py walks the list).
REFUSED: dict[str, tuple] = {
    "n": (lambda v: v in (None, 1), "send n=1 (or leave it out) and make several requests: they are batched together"),
    "logprobs": (_off, "leave logprobs out"),
    "top_logprobs": (_off, "leave top_logprobs out"),
    "logit_bias": (_off, "leave logit_bias out; response_format or tools constrain a reply instead"),
    "frequency_penalty": (_off, "leave it at 0 and send repetition_penalty (e.g. 1.1) instead"),
    "presence_penalty": (_off, "leave it at 0 and send repetition_penalty (e.g. 1.1) instead"),
    "audio": (_off, "LLM OS models answer in text: leave audio out"),
    "modalities": (lambda v: v is None or list(v) == ["text"], 'LLM OS models answer in text: send ["text"]'),
    "prediction": (_off, "leave prediction out"),
    "reasoning_effort": (_off, "the models here do not reason in hidden steps: leave reasoning_effort out"),
    "verbosity": (_off, "leave verbosity out; say how long a reply should be in the prompt"),
    "web_search_options": (_off, "LLM OS does not search the web: leave web_search_options out"),
    "functions": (_off, "send tools instead of the deprecated functions"),
    "function_call": (_off, "send tool_choice instead of the deprecated function_call"),
    "store": (_off, "LLM OS does not store replies for later retrieval: leave store out"),
    "metadata": (_off, "metadata goes with store, which LLM OS does not offer: leave it out"),
    "service_tier": (lambda v: v in (None, "auto", "default"), 'leave service_tier out (or "auto")'),
    "moderation": (_off, "LLM OS does not moderate replies: leave moderation out"),
    "prompt_cache_options": (_off, "leave it out: LLM OS keeps the prompt prefixes it has read by itself"),
    "prompt_cache_retention": (_off, "leave it out: LLM OS keeps the prompt prefixes it has read by itself"),
    "best_of": (lambda v: v in (None, 1), "leave best_of out: LLM OS writes one completion per request"),
    "echo": (_off, "leave echo out; the prompt is yours already"),
    "suffix": (_off, "leave suffix out: LLM OS completes at the end of the prompt only"),
}


class _Sampling(_Body):
    """The sampling fields chat and completions share, and the ones either refuses (REFUSED)."""
    model: Text = Field(min_length=1, max_length=200)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0, le=1_000_000)
    repetition_penalty: float | None = Field(None, gt=0, le=10)
    max_tokens: int | None = Field(None, ge=1)
    stop: StopText | Annotated[list[StopText], Field(max_length=MAX_STOP)] | None = None
    seed: int | None = None
    response_format: ResponseFormat | None = None
    # Identifiers of the caller (abuse monitoring, cache routing, at OpenAI): accepted, they change no reply.
    user: str | None = Field(None, max_length=256)
    n: int | None = Field(None, ge=1, le=128)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    logprobs: bool | int | None = None
    logit_bias: dict[str, float] | None = None

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def reply_tokens(self) -> int | None:
        return self.max_tokens

    def refuse_unsupported(self) -> None:
        for name, (allowed, hint) in REFUSED.items():
            if name in type(self).model_fields and not allowed(getattr(self, name)):
                raise InvalidInput(f"{name}={getattr(self, name)!r} is not supported"[:200], hint)

    def sampling(self, recommended: dict, grammar: str | None = None) -> SamplingParams:
        """The model's recommended sampling, overridden by what the request sets; refusals are 400s."""
        self.refuse_unsupported()
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stop) > MAX_STOP:
            raise InvalidInput(f"at most {MAX_STOP} stop sequences, got {len(stop)}")
        max_tokens = self.reply_tokens()
        if max_tokens is not None and max_tokens > MAX_TOKENS:
            raise InvalidInput(f"max_tokens is {max_tokens}, the most is {MAX_TOKENS}", "ask for fewer tokens")
        greedy = self.temperature == 0
        # Under a grammar the model's recommended repetition penalty would punish the quotes, braces and keys the
        # grammar requires, and strings then run on to max_tokens (measured on gemma-3-270m: 1 reply in 6 at
        # 1.1, none at 1.0): it applies only when the request asks for it.
        penalty = self.repetition_penalty if self.repetition_penalty is not None or not grammar else 1.0
        return SamplingParams.for_model(
            recommended, do_sample=False if greedy else (True if self.temperature else None), temperature=None if greedy else self.temperature,
            top_p=self.top_p, top_k=self.top_k, repetition_penalty=penalty,
            max_new_tokens=max_tokens, stop=stop or None, grammar=grammar,
            # torch seeds are 64-bit; any integer a client sends maps onto one
            seed=None if self.seed is None else self.seed % 2**63)

    def format_grammar(self) -> str | None:
        schema = self.response_format.reply_schema() if self.response_format else None
        return None if schema is None else constraints.json_schema_grammar(schema)


@dataclass
class ChatPlan:
    """What a chat request asks of the engine: plain messages, the grammar of its reply, how to read tool calls."""
    messages: list[dict]
    grammar: str | None
    reader: Callable[[], tools.ToolCallReader] | None    # None: no tools offered, the reply is text


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1, max_length=10_000)
    max_completion_tokens: int | None = Field(None, ge=1)
    tools: list[ToolDef] | None = Field(None, max_length=tools.MAX_TOOLS)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    safety_identifier: str | None = Field(None, max_length=256)
    prompt_cache_key: str | None = Field(None, max_length=256)
    top_logprobs: int | None = None
    audio: dict[str, Any] | None = None
    modalities: list[str] | None = None
    prediction: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    web_search_options: dict[str, Any] | None = None
    functions: list[Any] | None = None
    function_call: str | dict[str, Any] | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    service_tier: str | None = None
    moderation: dict[str, Any] | None = None
    prompt_cache_options: dict[str, Any] | None = None
    prompt_cache_retention: str | None = None

    def reply_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def plan(self) -> ChatPlan:
        """The messages in the generic tool format with the tools offered, and the reply's grammar."""
        messages = [m.as_dict() for m in self.messages]
        schema = self.response_format.reply_schema() if self.response_format else None
        offered = [tools.Tool(t.function.name, t.function.description or "",
                              t.function.parameters or {"type": "object", "properties": {}}) for t in self.tools or []]
        choice = self.tool_choice
        choice = choice.function.name if isinstance(choice, NamedToolChoice) else (choice or ("auto" if offered else "none"))
        if choice != "none" and not offered:
            raise InvalidInput(f"tool_choice is {choice!r} but no tools were sent", "send tools, or leave tool_choice out")
        notes = [] if schema is None else [JSON_NOTE + ("" if schema == {"type": "object"} else
                                                        f" It follows this JSON schema:\n{json.dumps(schema)}")]
        if choice == "none":
            return ChatPlan(tools.fold_messages(messages, "\n".join(notes) or None), self.format_grammar(), None)
        tools.check_tools(offered)
        parallel = self.parallel_tool_calls is not False
        prompt = "\n\n".join([tools.system_prompt(offered, choice, parallel), *notes])
        grammar = tools.grammar(offered, choice, parallel, schema)
        return ChatPlan(tools.fold_messages(messages, prompt), grammar,
                        lambda: tools.ToolCallReader(text_allowed=choice == "auto"))


class CompletionRequest(_Sampling):
    prompt: Text | list[Text]
    echo: bool | None = None
    suffix: str | None = None
    best_of: int | None = Field(None, ge=1, le=128)

    def text(self) -> str:
        """One prompt: a list is accepted only with one element (one choice per request)."""
        if isinstance(self.prompt, list):
            if len(self.prompt) != 1:
                raise InvalidInput(f"{len(self.prompt)} prompts were sent; LLM OS completes one per request",
                                   "send one prompt, or make several requests (they are batched together)")
            return self.prompt[0]
        return self.prompt


class EmbeddingRequest(_Body):
    model: Text = Field(min_length=1, max_length=200)
    input: Text | list[Text]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None

    def texts(self) -> list[str]:
        texts = [self.input] if isinstance(self.input, str) else list(self.input)
        if not texts:
            raise InvalidInput("input is empty", "send a string or a list of strings")
        if len(texts) > MAX_EMBED_INPUTS:
            raise InvalidInput(f"{len(texts)} inputs; at most {MAX_EMBED_INPUTS} per request",
                               "split them over several requests")
        return texts
