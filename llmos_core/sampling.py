"""Per-request sampling of the next token from a row of logits, shared by every chat backend.

One implementation for transformers and llama.cpp, so a setting means the same on both: repetition
penalty over the whole text so far (prompt and reply, as transformers does it), then greedy, or
temperature, top-k, top-p and a draw from the request's own seeded generator.

Speed matters here: on the CPU the sampler runs between decode steps, once per request, while the
decoding threads wait. Gemma's vocabulary has 262,144 tokens; drawing from all of them (top-k and top-p
off) with torch.multinomial took 5.9 ms a token on this machine, longer than a third of a decode step of
8 requests. `draw` finds the token by the inverse of the cumulative distribution, summed in blocks:
0.3-0.5 ms, and exact (float64 sums).
"""
from __future__ import annotations

import random
from typing import Any

# Tokens summed per block by `draw`: one cumulative sum over the blocks, then one inside the block.
DRAW_BLOCK = 1024
# Top-p first looks among the tokens at least this likely: usually a handful that already hold top_p of the
# mass, found by one comparison (32 us over 49k tokens, where torch.topk took 90 us).
NUCLEUS_FLOOR = 1e-4


def draw(weights, generator) -> int:
    """An index drawn with probability proportional to `weights` (1-D, >= 0, any scale), from `generator`."""
    import torch

    n = weights.numel()
    pad = (-n) % DRAW_BLOCK
    padded = torch.nn.functional.pad(weights, (0, pad)) if pad else weights
    blocks = padded.view(-1, DRAW_BLOCK).sum(1, dtype=torch.float64).cumsum(0)
    target = float(torch.rand((), generator=generator, dtype=torch.float64)) * float(blocks[-1])
    block = min(int(torch.searchsorted(blocks, target, right=True)), blocks.numel() - 1)
    before = float(blocks[block - 1]) if block else 0.0
    inside = padded[block * DRAW_BLOCK:(block + 1) * DRAW_BLOCK].to(torch.float64).cumsum(0)
    index = block * DRAW_BLOCK + min(int(torch.searchsorted(inside, target - before, right=True)), DRAW_BLOCK - 1)
    index = min(index, n - 1)
    while index > 0 and float(weights[index]) == 0.0:   # rounding at a block's end: the last token that can be drawn
        index -= 1
    return index


def sample_next(scores, history, params: Any, generator) -> int:
    """One token id from a row of logits (V,), with `history` (token ids so far, a LongTensor) for the penalty.

    The same per-request sampling generate() would do: repetition penalty, then greedy or temperature,
    top-k and top-p. Top-p looks only at the top candidates, widened until they hold top_p of the mass,
    so a 262k vocabulary is never fully sorted.
    """
    import torch

    scores = scores.float()
    if params.repetition_penalty != 1.0 and history.numel():
        seen = scores.gather(0, history)
        scores = scores.scatter(0, history, torch.where(seen < 0, seen * params.repetition_penalty,
                                                        seen / params.repetition_penalty))
    if not params.do_sample:
        return int(torch.argmax(scores))
    probs = torch.softmax(scores / params.temperature, dim=-1)
    vocab = probs.numel()
    k = params.top_k if 0 < params.top_k < vocab else vocab
    if params.top_p < 1.0:
        top, idx = _likely_nucleus(probs, k, params.top_p)
        if top is None:
            k_try = min(k, 64)
            while True:
                top, idx = torch.topk(probs, k_try)
                if k_try >= k or float(top.sum()) >= params.top_p:
                    break
                k_try = min(k, k_try * 4)
        cumulative = torch.cumsum(top, 0)
        keep = int((cumulative < params.top_p).sum()) + 1   # the smallest set reaching top_p
        top, idx = top[:keep], idx[:keep]
    elif k < vocab:
        top, idx = torch.topk(probs, k)
    else:
        return draw(probs, generator)
    return int(idx[draw(top, generator)])


def _likely_nucleus(probs, k: int, top_p: float):
    """The most likely tokens, most likely first, when those above NUCLEUS_FLOOR hold top_p of the mass and are
    no more than top-k allows: then the nucleus is a prefix of them, as it is of torch.topk's answer (ties in
    token order). (None, None) otherwise, and the caller widens torch.topk until it holds top_p. In numpy on
    the CPU: torch's per-op overhead made the same steps cost 92 us, numpy's 32 us."""
    import numpy as np
    import torch

    if probs.device.type != "cpu":
        return None, None
    weights = probs.numpy()
    idx = np.flatnonzero(weights >= NUCLEUS_FLOOR)
    if not 0 < idx.size <= k:
        return None, None
    top = weights[idx]
    if float(top.sum(dtype=np.float64)) < top_p:
        return None, None
    order = np.argsort(-top, kind="stable")
    return torch.from_numpy(top[order]), torch.from_numpy(idx[order])


class RequestSampler:
    """What sampling needs to know of one request: its settings, the tokens so far (for the penalty, grows
    as it samples) and its generator (seeded from params.seed, or at random)."""

    def __init__(self, input_ids: list[int], params: Any):
        import torch

        self.params = params
        self.history = torch.tensor(sorted(set(input_ids)), dtype=torch.long)
        self.generator = torch.Generator().manual_seed(params.seed if params.seed is not None
                                                       else random.randrange(2**63))

    def sample(self, scores) -> int:
        import torch

        token = sample_next(scores, self.history, self.params, self.generator)
        if self.params.repetition_penalty != 1.0:
            self.history = torch.cat([self.history, torch.tensor([token])]).unique()
        return token
