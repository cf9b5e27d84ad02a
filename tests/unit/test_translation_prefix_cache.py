"""CausalLMEngine reuses the KV cache of the shared few-shot prompt: greedy outputs must not change."""
from __future__ import annotations

import pytest

from llmos_core.translation.causal_engine import CausalLMEngine

TEXTS = ["Hello, how are you today?", "The quick brown fox jumps over the lazy dog.", "Thank you ⟦0⟧.",
         "LLM OS runs language models on this machine.", "Keep its structure.", "0 1 2 3"]


def _engine(folder, chat: bool) -> CausalLMEngine:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    return CausalLMEngine(model, AutoTokenizer.from_pretrained(folder), chat=chat, max_batch=4)


@pytest.mark.parametrize("which", ["tiny_base", "tiny_causal"])
def test_prefix_cache_gives_the_same_greedy_outputs(which, request):
    import torch

    model = _engine(request.getfixturevalue(which), chat=which == "tiny_causal")
    prefix, cache = model._prefix("en", "de")
    assert len(prefix) > 20 and cache is not None   # the few-shot examples are shared, hence cached
    # sentences with ⟦n⟧ marks have a prompt (and a prefix) of their own
    marked, _ = model._prefix("en", "de", marked=True)
    assert len(marked) > 20 and marked != prefix
    assert model._encode("Thank you ⟦0⟧.", "en", "de")[:len(marked)] == marked
    plain = [t for t in TEXTS if "⟦" not in t]
    rows = [model._encode(t, "en", "de") for t in plain]
    assert all(r[:len(prefix)] == prefix for r in rows)
    budgets = [int(len(model.tokenizer(t, add_special_tokens=False)["input_ids"]) * 2.5) + 8 for t in plain]
    # Token by token: the cached prefix, batched or alone, against whole prompts prefilled every time.
    cached_batch = model._greedy(rows, budgets, prefix, cache)
    cached_single = [model._greedy([r], [b], prefix, cache)[0] for r, b in zip(rows, budgets)]
    plain_batch = model._greedy(rows, budgets, [], None)
    plain_single = [model._greedy([r], [b], [], None)[0] for r, b in zip(rows, budgets)]
    assert cache.get_seq_length() == len(prefix)   # decoding worked on copies
    assert cached_single == plain_single
    assert cached_batch == plain_batch == plain_single
    assert all(cached_single)

    # The hand-written greedy loop is transformers' greedy generate (here: the first sentence).
    with torch.inference_mode():
        generated = model.model.generate(input_ids=torch.tensor(rows[:1]), attention_mask=torch.ones(
                                         1, len(rows[0]), dtype=torch.long), do_sample=False,
                                         max_new_tokens=budgets[0], eos_token_id=model.stop_ids,
                                         pad_token_id=model.tokenizer.pad_token_id)
    assert generated[0, len(rows[0]):].tolist()[:len(cached_single[0])] == cached_single[0]

    # translate_batch (sorted by length, cut into batches of 4) gives what each sentence gets alone.
    out = model.translate_batch(TEXTS, "en", "de")
    model.prefix_cache = False
    assert out == [model.translate_batch([t], "en", "de")[0] for t in TEXTS]
