"""Int8 weight-only transformers: the layers compute what fp32 does within int8 rounding, a row's result
does not depend on its batch, and on an embedded model perplexity stays within 2% of fp32 and greedy text
is the same alone or batched."""
import pytest
import torch
from torch import nn

from llmos_core.engine import Engine
from llmos_core.models.int8 import Int8Embedding, Int8Linear, quantize_model
from llmos_core.models.perplexity import FIXED_TEXT, perplexity
from llmos_core.settings import Settings


def test_int8_linear_is_close_to_fp32_and_batch_invariant():
    torch.manual_seed(0)
    layer = nn.Linear(64, 48)
    model = nn.Sequential(layer)
    x = torch.randn(5, 64)
    expected = layer(x)
    quantize_model(model)
    assert isinstance(model[0], Int8Linear) and model[0].weight_int8.dtype == torch.int8
    got = model(x)
    assert torch.allclose(got, expected, atol=0.05 * float(expected.abs().max()))
    assert torch.equal(model(x[2:3]), got[2:3])   # alone or among others: the same bits


def test_tied_embedding_shares_the_int8_head(tiny_causal):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_causal)).eval()
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    ids = torch.tensor([[1, 5, 9, 3]])
    with torch.inference_mode():
        before = model(ids).logits
        quantize_model(model)
        after = model(ids).logits
    if tied:
        assert isinstance(model.get_input_embeddings(), Int8Embedding)
    assert (after.argmax(-1) == before.argmax(-1)).float().mean() >= 0.75
    assert not any(isinstance(m, nn.Linear) for m in model.modules())


@pytest.mark.slow
def test_int8_keeps_perplexity_and_batching_keeps_greedy_text(embedded_home):
    engine = Engine(Settings(home=embedded_home, threads=1), primary=False, start_threads=False)
    try:
        name = "smollm2-135m-instruct"
        fp32 = engine.models.load(name, "transformers")
        ppl32, _ = perplexity("transformers", fp32.model, fp32.tokenizer, FIXED_TEXT)
        engine.models.unload(name, "transformers")
        int8 = engine.models.load(name, "transformers-int8")
        ppl8, _ = perplexity("transformers-int8", int8.model, int8.tokenizer, FIXED_TEXT)
        assert abs(ppl8 - ppl32) / ppl32 < 0.02, (ppl8, ppl32)
        assert int8.measured_bytes < 0.4 * fp32.measured_bytes

        tok = int8.tokenizer
        tok.padding_side = "left"
        prompts = ["The capital of France is", "Write one sentence about the sea.", "1, 2, 3,"]
        def greedy(batch):
            enc = tok(batch, return_tensors="pt", padding=True)
            with torch.inference_mode():
                out = int8.model.generate(**enc, max_new_tokens=12, do_sample=False, pad_token_id=tok.eos_token_id)
            return [tok.decode(row[enc.input_ids.shape[1]:], skip_special_tokens=True) for row in out]
        assert greedy(prompts) == [greedy([p])[0] for p in prompts]
    finally:
        engine.close()
