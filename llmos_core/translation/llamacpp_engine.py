"""LlamaCppEngine: a GGUF causal LM translating by prompting (the same prompts as causal_engine), run on
llama.cpp's batch decoder instead of transformers fp32.

Why: on a CPU the 4-bit weights read as stored cost far fewer bytes per token than fp32, and the decoder
steps up to PARALLEL rows together (docs/BENCHMARKS.md). How:
  - the few-shot prompt every sentence of a kind shares (the prefix; causal_engine: sentences with ⟦n⟧
    marks and sentences without have prompts of their own) is evaluated once per language pair: a
    one-token request reads it into a slot first, and each row's slot then shares those KV cells
    (BatchDecoder._share_prefix, llama_memory_seq_cp) and evaluates only its own sentence;
  - every row is submitted at once and decoded together, greedy, each ending at the first token that
    holds a newline (the answer is one line) or at its own budget of new tokens;
  - `stop()` ends every row at the next decoder step (the translation was cancelled).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ..generation.request import SamplingParams
from ..generation.prompt import template_pieces
from ..models.llamacpp import LlamaCppRunner
from ..models.llamacpp_batch import PARALLEL, read_reply
from .causal_engine import budget, chat_messages, has_marks, plain_prompt, prefix_probes


@dataclass
class _RowParams(SamplingParams):
    stop_token_ids: frozenset = field(default_factory=frozenset)   # read by the batch decoder


class LlamaCppEngine:
    backend = "llamacpp"
    rows_per_call = 4 * PARALLEL   # the decoder runs PARALLEL at a time; the rest wait in its line
    check_output_language = True   # the Translator retries an answer still in the source language
    attempts = 2                   # prompt variants (causal_engine): attempt 1 is the retry's

    def __init__(self, resident, name: str = "gguf", chat: bool = False, reason: str = ""):
        self.runner = LlamaCppRunner(resident)
        self.model, self.name = resident.model, name
        self.chat = chat and bool(self.runner.chat_template)
        self.max_chars = 300
        self.reason = reason
        self.notes = [f"{name} is a general language model prompted to translate; a dedicated translation "
                      "model (opus-mt, NLLB, M2M100) translates better"]
        self._prefixes: dict[tuple[str, str, bool, int], list[int]] = {}
        self._cancel = threading.Event()

    def check(self, source: str, target: str) -> None:
        pass

    def stop(self) -> None:
        """End the rows being decoded now (and any later call) at the decoder's next step."""
        self._cancel.set()
        self.model.decoder.wake()

    def encode(self, text: str, source: str, target: str, attempt: int = 0) -> list[int]:
        """The prompt's token ids. The sentence is text, never read as control tokens (a document could
        hold `<start_of_turn>`); only what a chat template wrote around it is."""
        if self.chat:
            _, pieces = template_pieces(self.runner, chat_messages(text, source, target, attempt), False)
            return self.runner.encode(pieces)
        return self.model.tokenize(plain_prompt(text, source, target, attempt), add_bos=True, special=False)

    def prefix(self, source: str, target: str, marked: bool = False, attempt: int = 0) -> list[int]:
        """The token ids every sentence's prompt of a kind starts with, for this pair ([] when they share too
        little). One token short of the common part: the token before the sentence could merge with its
        first letters."""
        key = (source, target, marked, attempt)
        if key not in self._prefixes:
            a, b = (self.encode(probe, source, target, attempt) for probe in prefix_probes(marked))
            n = 0
            while n < min(len(a), len(b)) and a[n] == b[n]:
                n += 1
            self._prefixes[key] = a[:n - 1] if n - 1 >= 8 else []
        return self._prefixes[key]

    def translate_batch(self, texts: list[str], source: str, target: str, attempt: int = 0) -> list[str]:
        decoder = self.model.decoder
        stops = self.model.newline_tokens
        for marked in sorted({has_marks(t) for t in texts}):
            prefix = self.prefix(source, target, marked, attempt)
            if prefix and not self._cancel.is_set():
                # Read the prefix into a slot (one token is the least a request may write); the rows share it.
                read_reply(decoder.submit(prefix, _RowParams(do_sample=False, max_new_tokens=1), self._cancel))
        requests = []
        for text in texts:
            limit = budget(len(self.model.tokenize(text, add_bos=False)))
            requests.append(decoder.submit(self.encode(text, source, target, attempt),
                                           _RowParams(do_sample=False, max_new_tokens=limit, stop_token_ids=stops),
                                           self._cancel))
        # Read in order: the rows decode together in the decoder's thread meanwhile.
        return [read_reply(request).split("\n")[0].strip() for request in requests]
