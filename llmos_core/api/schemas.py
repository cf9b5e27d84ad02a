"""Request bodies of the API in OpenAI's shapes, and how they map to LLM OS's SamplingParams.

Unknown fields are ignored (clients send many optional ones); fields LLM OS cannot honour
(n > 1, logprobs, frequency/presence penalties) are refused with a 400 that says what to do instead.
Two extensions, as vLLM and llama.cpp's server have them: `top_k` and `repetition_penalty`.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ..errors import InvalidInput
from ..generation import SamplingParams

MAX_TOKENS = 8192          # SamplingParams' own limit
MAX_STOP = 4               # as OpenAI
MAX_STOP_CHARS = 200       # a stop sequence is a marker, not a text; each is checked against every token
MAX_EMBED_INPUTS = 2048    # as OpenAI


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
    model_config = ConfigDict(extra="ignore")


class StreamOptions(_Body):
    include_usage: bool = False


class TextPart(_Body):
    type: Literal["text"] = "text"
    text: Text


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant"]
    content: Text | list[TextPart] | None = None

    def as_dict(self) -> dict:
        """OpenAI's 'developer' is a system prompt; text parts are joined."""
        content = self.content or ""
        if isinstance(content, list):
            content = "".join(part.text for part in content)
        return {"role": "system" if self.role == "developer" else self.role, "content": content}


class _Sampling(_Body):
    """The sampling fields chat and completions share."""
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
    n: int | None = Field(None, ge=1, le=128)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    logprobs: bool | int | None = None
    user: str | None = None

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def reply_tokens(self) -> int | None:
        return self.max_tokens

    def sampling(self, recommended: dict) -> SamplingParams:
        """The model's recommended sampling, overridden by what the request sets; refusals are 400s."""
        if (self.n or 1) != 1:
            raise InvalidInput(f"n={self.n} is not supported: LLM OS returns one choice per request",
                               "send n=1 (or leave it out) and make several requests")
        for name in ("frequency_penalty", "presence_penalty"):
            if getattr(self, name):
                raise InvalidInput(f"{name} is not supported", "leave it at 0 and send repetition_penalty "
                                   "(e.g. 1.1) instead: LLM OS penalises repeats the way transformers does")
        if self.logprobs:
            raise InvalidInput("logprobs are not supported", "leave logprobs out")
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stop) > MAX_STOP:
            raise InvalidInput(f"at most {MAX_STOP} stop sequences, got {len(stop)}")
        max_tokens = self.reply_tokens()
        if max_tokens is not None and max_tokens > MAX_TOKENS:
            raise InvalidInput(f"max_tokens is {max_tokens}, the most is {MAX_TOKENS}", "ask for fewer tokens")
        greedy = self.temperature == 0
        return SamplingParams.for_model(
            recommended, do_sample=False if greedy else (True if self.temperature else None), temperature=None if greedy else self.temperature,
            top_p=self.top_p, top_k=self.top_k, repetition_penalty=self.repetition_penalty,
            max_new_tokens=max_tokens, stop=stop or None,
            # torch seeds are 64-bit; any integer a client sends maps onto one
            seed=None if self.seed is None else self.seed % 2**63)


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1, max_length=10_000)
    max_completion_tokens: int | None = Field(None, ge=1)

    def reply_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_Sampling):
    prompt: Text | list[Text]
    echo: bool = False
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

    def sampling(self, recommended: dict) -> SamplingParams:
        if self.echo or self.suffix or (self.best_of or 1) != 1:
            raise InvalidInput("echo, suffix and best_of are not supported", "leave them out")
        return super().sampling(recommended)


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
