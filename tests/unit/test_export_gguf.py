"""GGUF export of fine-tuned models: the layouts llama.cpp expects (rotary Q/K order, Gemma's norm offset,
tied embeddings), its registration (auto serves the fine-tune on llama.cpp and says why), and, slow, on
both embedded models: the exported Q8_0 and 4-bit files score the fixed text within 2% and 5% of the
same weights on transformers fp32."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from llamacpp_required import binding  # noqa: F401 (a fixture)

from llmos_core.backend_choice import choose_backend
from llmos_core.errors import InvalidInput, ModelNotFound
from llmos_core.models import fetch
from llmos_core.models.catalog import EMBEDDED, Catalog, ModelSpec
from llmos_core.models.export_gguf import ExportError, export_gguf, gguf_tensors, permute_rotary
from llmos_core.models.perplexity import FIXED_TEXT, perplexity_llamacpp, perplexity_transformers
from llmos_core.settings import Settings
from llmos_core.store import Store
from llmos_core.training.export import export_model, lineage_gguf, load_merged

ALL = {"transformers": 1, "transformers-int8": 1, "llamacpp": 1}


def test_rotary_permutation_is_the_inverse_of_what_transformers_undoes_on_load():
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    rows = np.arange(8 * 6 * 3, dtype=np.float32).reshape(8 * 6, 3)   # 8 heads of 6 rows
    for n_head, n_kv in ((8, 8), (8, 2)):
        weights = rows[: rows.shape[0] * n_kv // n_head]
        undone = LlamaTensorProcessor()._reverse_permute_weights(permute_rotary(weights, n_kv), n_kv, n_kv)
        assert np.array_equal(undone, weights)
        assert not np.array_equal(permute_rotary(weights, n_kv), weights)


def _state(names: list[str]) -> dict:
    return {name: torch.ones(4, 4) if "proj" in name or "embed" in name or "lm_head" in name else torch.zeros(4)
            for name in names}


def test_gemma_norms_get_their_offset_back_and_tied_output_is_not_written():
    state = _state(["model.embed_tokens.weight", "lm_head.weight", "model.norm.weight",
                    "model.layers.0.input_layernorm.weight", "model.layers.0.self_attn.q_norm.weight",
                    "model.layers.0.self_attn.q_proj.weight"])
    config = {"num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "tie_word_embeddings": True}
    tensors = gguf_tensors(state, config, "gemma3")
    assert set(tensors) == {"token_embd.weight", "output_norm.weight", "blk.0.attn_norm.weight",
                            "blk.0.attn_q_norm.weight", "blk.0.attn_q.weight"}
    assert all(np.all(tensors[n] == 1.0) for n in tensors if "norm" in n)   # HF stores w, GGUF 1 + w
    assert tensors["output_norm.weight"].dtype == np.float32 and tensors["blk.0.attn_q.weight"].dtype == np.float16
    # Gemma's rotary is in halves in both layouts: Q is not permuted
    assert np.array_equal(tensors["blk.0.attn_q.weight"], np.ones((4, 4), np.float16))


def test_llama_permutes_q_and_k_keeps_norms_and_writes_an_untied_output():
    q = torch.arange(16, dtype=torch.float32).reshape(4, 4)
    state = {"model.layers.0.self_attn.q_proj.weight": q, "model.layers.0.self_attn.k_proj.weight": q[:2].clone(),
             "model.layers.0.self_attn.v_proj.weight": q[:2].clone(), "model.norm.weight": torch.ones(4),
             "lm_head.weight": q.clone()}
    config = {"num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
              "tie_word_embeddings": False}
    tensors = gguf_tensors(state, config, "llama")
    assert np.array_equal(tensors["blk.0.attn_q.weight"], permute_rotary(q.numpy(), 2).astype(np.float16))
    assert np.array_equal(tensors["blk.0.attn_k.weight"], permute_rotary(q[:2].numpy(), 1).astype(np.float16))
    assert np.array_equal(tensors["blk.0.attn_v.weight"], q[:2].numpy().astype(np.float16))
    assert np.all(tensors["output_norm.weight"] == 1.0) and "output.weight" in tensors


def test_unknown_architectures_and_tensors_are_refused():
    config = {"num_hidden_layers": 1, "num_attention_heads": 2}
    with pytest.raises(ExportError, match="phi3"):
        gguf_tensors({}, config, "phi3")
    with pytest.raises(ExportError, match="no GGUF name"):
        gguf_tensors({"model.layers.0.mystery.weight": torch.ones(2, 2)}, config, "llama")


@pytest.fixture
def catalog(tmp_path):
    return Catalog(Store(tmp_path / "llmos.db"))


def test_auto_serves_an_exported_fine_tune_on_llamacpp_and_says_why(tmp_path, catalog):
    settings = Settings(home=tmp_path)
    trained = catalog.register(ModelSpec(name="pirate", source="trained", location=str(tmp_path / "pirate"),
                                         data={"base_model": "gemma-3-270m", "job": 1}))
    choice = choose_backend(trained, "auto", device_kind="cpu", backends=ALL)
    assert choice.backend == "transformers" and "export it to GGUF" in choice.reason
    with pytest.raises(InvalidInput, match="not a GGUF"):
        choose_backend(trained, "llamacpp", device_kind="cpu", backends=ALL)

    gguf = tmp_path / "pirate.Q8_0.gguf"
    exported = catalog.update_data("pirate", gguf=str(gguf), gguf_quant="q8_0")
    assert exported.data["base_model"] == "gemma-3-270m" and exported.location == trained.location
    choice = choose_backend(exported, "auto", device_kind="cpu", backends=ALL)
    assert choice.backend == "llamacpp" and "Q8_0 GGUF exported from this fine-tune" in choice.reason
    # without llama.cpp, the fine-tune's own fp32 weights, not int8 of them
    assert choose_backend(exported, "auto", device_kind="cpu", backends={"transformers": 1, "transformers-int8": 1},
                          llamacpp_reason="x").backend == "transformers"
    with pytest.raises(ModelNotFound, match="export it again"):   # the file was removed by hand
        fetch.gguf_path(exported, settings)
    gguf.write_bytes(b"GGUF")
    assert fetch.gguf_path(exported, settings) == gguf


def test_export_is_refused_for_models_not_trained_here_or_not_from_a_gguf(tmp_path, catalog):
    settings = Settings(home=tmp_path)
    with pytest.raises(InvalidInput, match="not a fine-tuned model"):
        export_model("gemma-3-270m", catalog, settings)
    catalog.register(ModelSpec(name="tiny", source="local", location=str(tmp_path)))
    fine = catalog.register(ModelSpec(name="tiny-ft", source="trained", location=str(tmp_path / "ft"),
                                      data={"base_model": "tiny"}))
    with pytest.raises(ExportError, match="did not come from a GGUF"):
        lineage_gguf(fine, catalog, settings)


@pytest.mark.slow
@pytest.mark.timeout(1800)   # Gemma: converting once per machine, then a 540 MB f16 write and two quantizations
@pytest.mark.parametrize("name", sorted(EMBEDDED))
def test_the_exported_gguf_scores_as_the_fp32_weights_on_both_embedded_models(binding, embedded_home, tmp_path, name):
    """A "fine-tune" that is the embedded model's own fp32 weights, exported and served by llama.cpp: any
    layout mistake (rotary order, norm offset, tied output) multiplies the perplexity, quantization moves it
    by a few percent at most."""
    from llmos_core.models.llamacpp import LlamaCppModel
    from transformers import AutoTokenizer

    shared = Settings(home=embedded_home, threads=1)
    catalog = Catalog(Store(tmp_path / "llmos.db"))
    folder = fetch.model_folder(catalog.get(name), shared)   # converted once per machine
    weights = tmp_path / "ft"
    weights.mkdir()
    for item in folder.iterdir():   # the trained model's folder: links, not a copy of 1 GB
        (weights / item.name).symlink_to(item)
    catalog.register(ModelSpec(name="ft", source="trained", location=str(weights), data={"base_model": name}))
    done = export_model("ft", catalog, shared, "q8_0")
    assert catalog.get("ft").data["gguf"] == done["gguf"]

    model, tokenizer = load_merged(catalog.get("ft"), catalog, shared), AutoTokenizer.from_pretrained(str(weights))
    fp32, n_tokens = perplexity_transformers(model, tokenizer, FIXED_TEXT)
    q4 = export_gguf(model, lineage_gguf(catalog.get("ft"), catalog, shared), tmp_path / "ft.Q4.gguf", "q4",
                     threads=1)
    for path, tolerance in ((done["gguf"], 0.02), (q4, 0.05)):
        served = LlamaCppModel(Path(path), 512, 1)
        try:
            ppl, n = perplexity_llamacpp(served, FIXED_TEXT)
        finally:
            served.close()
        assert n == n_tokens and abs(ppl / fp32 - 1) < tolerance, (path, ppl, fp32)
