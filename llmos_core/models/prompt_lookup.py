"""Prompt-lookup speculative decoding: guess the next tokens by finding the last few tokens written earlier
in the prompt or the reply, and taking what followed them there (names, numbers, markup, quoted text: the
parts of a reply that copy its input).

The guesses (drafts) are fed with the row's next token in the same llama_decode, with logits for each; the
row's own sampler then samples each position in turn, and every draft that equals what it sampled is kept
(its KV cell is already written), so a step can yield several tokens for one pass over the weights. The
first draft that differs ends the run: the token sampled there is the right next token, and the cells of
the rejected drafts are removed. Output is therefore token for token what plain decoding writes: only
greedy rows without a grammar draft (a sampled row would draw its random numbers at other points).

Each extra row costs compute (Gemma's 262k-word output layer is the bulk of a token), so a request whose
drafts are mostly rejected stops drafting: free chat never gets slower than without it.
"""
from __future__ import annotations

from typing import Any

MAX_DRAFT = 5          # tokens guessed per step for one row, at most (Lookup.length adapts)
NGRAM = (3, 2)         # the lengths of the tail searched for, longest first
SEARCH_TOKENS = 4096   # how far back the tail is searched (bounded time per step)
TRIAL = 20             # drafted tokens before the acceptance rate is judged
MIN_ACCEPTANCE = 0.35  # below this rate, after TRIAL drafted tokens, the request stops drafting


def eligible(params: Any, grammar: Any) -> bool:
    """Only greedy rows without a grammar: their verification equals plain decoding exactly."""
    sampled = getattr(params, "do_sample", False) and getattr(params, "temperature", 0.0) > 0
    return not sampled and grammar is None


def find_draft(history: list[int], limit: int) -> list[int]:
    """Up to `limit` tokens that followed the latest earlier occurrence of history's last n tokens."""
    if limit <= 0:
        return []
    start = max(0, len(history) - SEARCH_TOKENS)
    for n in NGRAM:
        if len(history) - start <= n:
            continue
        tail = history[-n:]
        first = tail[0]
        # from the most recent occurrence backwards (the reply's own recent text first)
        for i in range(len(history) - n - 1, start - 1, -1):
            if history[i] == first and history[i:i + n] == tail:
                draft = history[i + n:i + n + limit]
                if draft:
                    return draft
    return []


class Lookup:
    """One request's drafting state: its tokens so far, and how many of its drafts were accepted."""

    def __init__(self, prompt: list[int], enabled: bool):
        self.history = list(prompt)
        self.enabled = enabled
        self.drafted = self.accepted = 0
        self.length = MAX_DRAFT   # drafts per step: one more after a step that kept all, else what was kept + 1

    def draft(self, next_token: int, room: int) -> list[int]:
        """Drafts to feed after `next_token` (which is already known), at most `room` of them."""
        if not self.enabled:
            return []
        return find_draft(self.history + [next_token], min(self.length, room))

    def record(self, fed: list[int], drafted: int, accepted: int) -> None:
        """`fed`: the tokens now in the cache (next token and accepted drafts)."""
        self.history.extend(fed)
        self.drafted += drafted
        self.accepted += accepted
        if drafted:
            self.length = min(MAX_DRAFT, self.length + 1) if accepted == drafted else max(1, accepted + 1)
        if self.drafted >= TRIAL and self.accepted < MIN_ACCEPTANCE * self.drafted:
            self.enabled = False
