"""What a chat request asks for and what comes back: sampling settings, the events of a streamed reply, the
whole reply. Plain data, shared by the service, the runners, the pages, the CLI and the HTTP API."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ..errors import InvalidInput


@dataclass
class SamplingParams:
    do_sample: bool = True
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0                 # 0: off
    repetition_penalty: float = 1.0
    max_new_tokens: int = 256
    seed: int | None = None        # None: a fresh random seed per request
    stop: list[str] = field(default_factory=list)
    # The shape the reply must have: llguidance's grammar as text (constraints.py), None: free text.
    grammar: str | None = None
    # That grammar compiled for the model that serves the request (set by the service, read by the runner).
    constraint: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.do_sample = bool(self.do_sample)
        self.temperature, self.top_p = float(self.temperature), float(self.top_p)
        self.top_k, self.max_new_tokens = int(self.top_k), int(self.max_new_tokens)
        self.repetition_penalty = float(self.repetition_penalty)
        self.stop = [s for s in (self.stop or []) if s]
        if self.do_sample and not self.temperature > 0:
            raise InvalidInput(f"temperature must be above 0 when sampling, got {self.temperature}",
                               "raise the temperature, or choose greedy decoding")
        if not 0 < self.top_p <= 1:
            raise InvalidInput(f"top-p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise InvalidInput(f"top-k must be 0 (off) or more, got {self.top_k}")
        if not self.repetition_penalty > 0:
            raise InvalidInput(f"repetition penalty must be above 0, got {self.repetition_penalty}")
        if not 1 <= self.max_new_tokens <= 8192:
            raise InvalidInput(f"max new tokens must be between 1 and 8192, got {self.max_new_tokens}")

    @classmethod
    def for_model(cls, sampling: dict | None = None, **overrides: Any) -> "SamplingParams":
        """A model's recommended sampling (ModelSpec.sampling), then the caller's overrides (None = keep)."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in (sampling or {}).items() if k in names}
        values.update({k: v for k, v in overrides.items() if v is not None and k in names})
        return cls(**values)

    def to_dict(self) -> dict:
        values = asdict(replace(self, constraint=None))
        del values["constraint"]
        return values


@dataclass
class TokenEvent:
    text: str = ""                  # new text since the previous event
    tokens: int = 0                 # tokens generated so far
    prompt_tokens: int = 0
    ttft_s: float | None = None     # time to first token, from the request's start (queueing included)
    elapsed_s: float = 0.0
    queued: int | None = None       # set while waiting: how many requests are ahead
    done: bool = False
    finish_reason: str | None = None   # stop | length | cancelled
    dropped_messages: int = 0       # oldest messages left out to fit the context
    backend: str = ""               # the backend that served it, and why (backend_choice.py)
    backend_reason: str = ""

    @property
    def tokens_per_s(self) -> float | None:
        """Decoding speed, first token excluded (the first carries the prompt's cost)."""
        if self.ttft_s is None or self.tokens < 2 or self.elapsed_s <= self.ttft_s:
            return None
        return (self.tokens - 1) / (self.elapsed_s - self.ttft_s)

    def next(self, **changes: Any) -> "TokenEvent":
        """The following event: this one's figures with `changes` (events are never changed once yielded)."""
        return replace(self, **changes)

    def stats(self) -> dict:
        return {"tokens": self.tokens, "prompt_tokens": self.prompt_tokens,
                "ttft_s": None if self.ttft_s is None else round(self.ttft_s, 3),
                "tokens_per_s": None if self.tokens_per_s is None else round(self.tokens_per_s, 2),
                "elapsed_s": round(self.elapsed_s, 3), "finish_reason": self.finish_reason,
                "dropped_messages": self.dropped_messages, "backend": self.backend,
                "backend_reason": self.backend_reason}


@dataclass
class ChatResult:
    text: str
    stats: dict
