"""Perplexity of a fixed text under a loaded model, through either backend: the yardstick that says two
forms of one model (fp32 transformers, 4-bit llama.cpp, int8) still compute the same thing.

Each backend tokenizes with its own tokenizer (the GGUF's vocabulary in both cases here), so the figures
are per token of the same text and comparable within a few percent; exact equality is not expected.
"""
from __future__ import annotations

import math

import numpy as np

from . import llama_compute

# Tokens per llama.cpp decode: the logits of every position come back, n_vocab floats each
# (Gemma: 262144 x 4 B = 1 MB a token), so chunks keep that buffer small.
LLAMACPP_CHUNK = 32

# The fixed text every comparison scores: plain encyclopaedic English, about 110 tokens.
FIXED_TEXT = (
    "The river begins in the mountains, where snow melts each spring and feeds a hundred small streams. "
    "As it flows toward the sea, it passes farms, forests and several old towns built of grey stone. "
    "In the largest town, a bridge with seven arches has stood for more than four hundred years. "
    "Merchants once carried wool, salt and wine along the river, and the town grew rich from their trade. "
    "Today most visitors come to walk along the banks, to watch the boats and to eat fresh fish in the "
    "small restaurants near the market square."
)


def perplexity(backend: str, model, tokenizer, text: str) -> tuple[float, int]:
    """(perplexity, tokens scored) of `text` under a model as the manager holds it."""
    if backend == "llamacpp":
        return perplexity_llamacpp(model, text)
    return perplexity_transformers(model, tokenizer, text)


def perplexity_transformers(model, tokenizer, text: str) -> tuple[float, int]:
    import torch

    ids = tokenizer(text, return_tensors="pt").input_ids.to(model.device)
    with torch.inference_mode():
        loss = model(input_ids=ids, labels=ids).loss   # mean NLL of tokens 1..n given the ones before
    return math.exp(float(loss)), ids.shape[1] - 1


def perplexity_llamacpp(model, text: str) -> tuple[float, int]:
    """Scores every position, a chunk per decode, in a context of its own (the chat context returns one
    logits row per sequence; this one returns every row of a chunk), on the same weights."""
    import llama_cpp

    from .llamacpp import new_context

    tokens = model.tokenize(text)
    if len(tokens) >= model.n_ctx:
        raise ValueError(f"the text is {len(tokens)} tokens, the context {model.n_ctx}")
    n_vocab = model.n_vocab
    nll = 0.0
    ctx = new_context(model.weights, n_ctx=len(tokens) + LLAMACPP_CHUNK, threads=model.threads,
                      outputs=LLAMACPP_CHUNK, n_batch=LLAMACPP_CHUNK)
    batch = llama_cpp.llama_batch_init(LLAMACPP_CHUNK, 0, 1)
    try:
        for start in range(0, len(tokens), LLAMACPP_CHUNK):
            chunk = tokens[start:start + LLAMACPP_CHUNK]
            for i, token in enumerate(chunk):
                batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, start + i, 1, True
                batch.seq_id[i][0] = 0
            batch.n_tokens = len(chunk)
            if llama_compute.decode(ctx, batch) != 0:
                raise RuntimeError("llama.cpp could not decode the text")
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits(ctx), shape=(len(chunk) * n_vocab,))
            logits = logits.reshape(len(chunk), n_vocab).astype(np.float64)
            for i in range(len(chunk)):
                target = start + i + 1
                if target >= len(tokens):
                    break
                row = logits[i]
                top = row.max()
                nll += top + math.log(np.exp(row - top).sum()) - row[tokens[target]]
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)
    return math.exp(nll / (len(tokens) - 1)), len(tokens) - 1
