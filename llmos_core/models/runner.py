"""The contract between the chat service (generation/service.py) and a backend that makes replies.

A runner serves one resident model. The service decides who runs (lanes, admission, cancel), builds the
prompt (generation/prompt.py) and turns text into events (generation/output.py); the runner only turns
token ids into text. It is told at construction what it may use, so it never reaches back into the
service: `capacity` (requests the service will send it at once) and `reserve_memory` (counts working
memory, e.g. a KV cache, with its model under the memory budget; raises InsufficientMemory when it does
not fit). Like Ollama's LlamaServer (Load, Completion, Close) and vLLM's model runner, it executes and
decides nothing.

A prompt reaches `encode` as pieces: (text, control). Control pieces are exactly one control token's
text (`<|im_start|>`, `<start_of_turn>`) that the chat template itself wrote; everything else, the
user's and documents' text included, is ordinary text and must never be read as a control token, so
typed text cannot forge a turn.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, ClassVar, Iterator, Protocol

if TYPE_CHECKING:
    from .manager import ResidentModel

# A CPU demo never needs 32k tokens of context, and the KV cache for four of them would not fit.
CONTEXT_CAP = 2048

Piece = tuple[str, bool]   # (text, is one control token written by the template)


@dataclass(frozen=True)
class RunnerBudget:
    capacity: int                                   # requests the service sends at once
    reserve_memory: Callable[[int, str], None]      # (bytes, what for): count it with the model, or raise
    prefix_cache_bytes: int = 0                     # room for a prefix cache of the runner's own (0: none)


class Runner(Protocol):
    # Requests it can serve at once by its own nature (llama.cpp: its sequences); None: as many as the
    # service admits, given as `budget.capacity`.
    max_active: ClassVar[int | None]
    resident: "ResidentModel"
    chat_template: str | None     # None: a base model, prompted in the plain dialogue format
    context_tokens: int           # prompt + reply must fit in this many tokens
    control_tokens: frozenset[str]  # texts its tokenizer reads as one control token when told to

    def render_chat(self, messages: list[dict], continue_final: bool) -> str:
        """The messages in the model's chat template (only called when chat_template is set)."""

    def encode(self, pieces: list[Piece]) -> list[int]:
        """Token ids of a prompt: control pieces as their token, text pieces as text; BOS as the model wants."""

    def stream(self, input_ids: list[int], params, cancel: threading.Event) -> Iterator[tuple[str, int]]:
        """(new text, generated tokens so far) per step; returns soon after `cancel` is set."""

    def alive(self) -> bool:
        """False once its model was unloaded: the service builds a new runner."""

    def close(self) -> None:
        """Stop its threads and drop its references to the model."""


RunnerFactory = Callable[["ResidentModel", RunnerBudget], Runner]


def strip_beside_controls(pieces: list[Piece], lstrip: frozenset[str], rstrip: frozenset[str]) -> list[Piece]:
    """Some control tokens take the whitespace beside them (a tokenizer's lstrip/rstrip flags, e.g. Phi-3's
    `<|end|>`): tokenizing the whole string drops it, so the pieces drop it too, and keep the same ids."""
    texts = [text for text, _ in pieces]
    for i, (text, control) in enumerate(pieces):
        if not control:
            continue
        if text in lstrip and i > 0 and not pieces[i - 1][1]:
            texts[i - 1] = texts[i - 1].rstrip()
        if text in rstrip and i + 1 < len(pieces) and not pieces[i + 1][1]:
            texts[i + 1] = texts[i + 1].lstrip()
    return [(text, control) for text, (_, control) in zip(texts, pieces) if text]
