"""The model browser: predictions from metadata (predict.py, shape.py), the corrections learned from replies
(calibration.py), and hub search against the fake hub (a gated model, one with no GGUF, an unknown
architecture, a hub that times out), through the use cases and the CLI."""
import json

import pytest

import fake_hub
from llmos_core.accounts import LOCAL_ADMIN
from llmos_core.__main__ import main
from llmos_core.engine import Engine
from llmos_core.errors import OfflineError
from llmos_core.models import browser
from llmos_core.models.browser import calibration as calibration_module
from llmos_core.models.browser import hub
from llmos_core.models.browser.calibration import Calibration, learn
from llmos_core.models.browser.predict import FIXED_BYTES, Gpu, predict, recommend
from llmos_core.models.llamacpp import DRAFT_ROW_BYTES
from llmos_core.models.browser.shape import Form, Shape, quant_of_filename
from llmos_core.settings import Settings
from llmos_core.usecases.models import search_models

MB = 1024**2
SHAPE = Shape("qwen2", 500_000_000, layers=24, hidden=896, heads=14, kv_heads=2, head_dim=64, vocab=151_936,
              context=32768)
QWEN_CONFIG = {"model_type": "qwen2", "hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14,
               "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 32768,
               "tie_word_embeddings": True}


def fixed_calibration() -> Calibration:
    return Calibration(bandwidth=10e9, flops=100e9)


@pytest.fixture
def calibrated(monkeypatch):
    """No benchmark in tests: the machine's figures are fixed (the corrections are still learned)."""
    monkeypatch.setattr(calibration_module, "machine", lambda settings, refresh=False: fixed_calibration())


def test_memory_is_weights_plus_kv_cache_plus_buffers():
    form = Form("llamacpp", "Q4_K_M", 400 * MB, 400 * MB)
    p = predict("m", SHAPE, form, fixed_calibration(), context=4096)
    kv = 2 * 24 * 2 * 64 * 2 * 4096   # K and V, layers, kv heads, head dim, f16, positions
    drafts = DRAFT_ROW_BYTES * SHAPE.vocab    # prompt lookup's logits rows
    assert p.kv_cache_bytes == kv and p.memory_bytes == 400 * MB + kv + FIXED_BYTES["llamacpp"] + drafts
    longer = predict("m", SHAPE, form, fixed_calibration(), context=8192)
    assert longer.memory_bytes - p.memory_bytes == kv
    # the prefix cache's cells (LLMOS_PREFIX_CACHE_MB) are allocated at load beside the context's
    cached = predict("m", SHAPE, form, fixed_calibration(), context=4096, prefix_cache_mb=64)
    assert cached.prefix_cache_bytes == pytest.approx(64 * MB, abs=kv / 4096)
    assert cached.memory_bytes - p.memory_bytes == cached.prefix_cache_bytes and cached.kv_cache_bytes == kv
    # decoding reads every weight once: twice the bytes, about half the speed (less the per-layer cost)
    q8 = predict("m", SHAPE, Form("llamacpp", "Q8_0", 800 * MB, 800 * MB), fixed_calibration())
    assert 0.45 < q8.decode_tokens_per_s / p.decode_tokens_per_s < 0.65
    # the prompt is compute: the same FLOPs whatever the quantization; TTFT = 1,000 tokens at that speed + a step
    assert p.ttft_s == pytest.approx(1000 / p.prompt_tokens_per_s + 1 / p.decode_tokens_per_s, rel=0.01)
    assert p.download_s is None and p.badge == "runs well"   # no download measured here yet
    assert predict("m", SHAPE, form, fixed_calibration(), download_rate=10 * MB).download_s == pytest.approx(40)


def test_badge_and_recommended_quantization_for_the_budget():
    forms = [Form("llamacpp", q, int(SHAPE.parameters * b), 0) for q, b in (("Q4_K_M", 0.56), ("Q8_0", 1.06),
                                                                             ("F16", 2.0))]
    budget = 800 * MB
    predictions = [predict("m", SHAPE, f, fixed_calibration(), context=4096, budget_bytes=budget) for f in forms]
    assert [p.badge for p in predictions] == ["runs well", "runs well", "too big"]
    assert recommend(predictions).quant == "Q8_0"   # the least quantized that fits with its context
    tight = [predict("m", SHAPE, f, fixed_calibration(), context=32768, budget_bytes=budget) for f in forms]
    assert recommend(tight).quant == "Q4_K_M"       # a longer context leaves room for the 4-bit form only
    slow = predict("m", SHAPE, forms[2], Calibration(bandwidth=2e9, flops=5e9))
    assert slow.badge == "runs slowly"


def test_partial_offload_puts_whole_layers_on_the_gpu():
    form = Form("llamacpp", "Q8_0", 2400 * MB, 0)   # 100 MB a layer
    cpu = predict("m", SHAPE, form, fixed_calibration(), context=1024)
    gpu = Gpu(free_bytes=1300 * MB, bandwidth=1000e9)
    p = predict("m", SHAPE, form, fixed_calibration(), context=1024, gpu=gpu)
    extra = p.kv_cache_bytes + p.overhead_bytes
    assert p.gpu_layers == int((1300 * MB - extra) // (100 * MB)) and 0 < p.gpu_layers < 24
    assert p.decode_tokens_per_s > cpu.decode_tokens_per_s
    big = predict("m", SHAPE, form, fixed_calibration(), gpu=Gpu(100 * 1024**3, 1000e9), budget_bytes=10 * MB)
    assert big.gpu_layers == 24 and big.badge == "runs well"   # all on the GPU: the RAM budget is not in play


def test_corrections_learned_per_runner_and_quantization():
    cal = learn(fixed_calibration(), [("decode", "llamacpp", "Q8_0", 0.5), ("decode", "llamacpp", "Q8_0", 0.7),
                                      ("ttft", "transformers", "fp32", 2.0)])
    assert cal.correction("decode", "llamacpp", "Q8_0") == (pytest.approx(0.6), True)
    assert cal.correction("decode", "llamacpp", "Q4_K_M") == (pytest.approx(0.6), True)   # the runner's figure
    assert cal.correction("decode", "transformers", "fp32") == (1.0, False)
    form = Form("llamacpp", "Q8_0", 800 * MB, 0)
    raw, fixed = predict("m", SHAPE, form, fixed_calibration()), predict("m", SHAPE, form, cal)
    assert fixed.decode_tokens_per_s == pytest.approx(raw.decode_tokens_per_s * 0.6, rel=0.01) and fixed.learned


def test_quantization_from_gguf_file_names():
    assert quant_of_filename("qwen2.5-0.5b-instruct-q4_k_m.gguf") == "Q4_K_M"
    assert quant_of_filename("Model.Q8_0.gguf") == "Q8_0"
    assert quant_of_filename("model-f16.gguf") == "F16"
    assert quant_of_filename("model.gguf") == "GGUF"


def _repos() -> dict:
    config = json.dumps(QWEN_CONFIG).encode()
    return {
        "acme/qwen-0.5b-instruct": {"files": {"config.json": config, "model.safetensors": 988 * MB,
                                              "qwen-0.5b-instruct-q4_k_m.gguf": 398 * MB,
                                              "qwen-0.5b-instruct-q8_0.gguf": 531 * MB},
                                    "info": {"safetensors": {"parameters": {"BF16": 494_032_768}, "total": 494_032_768},
                                             "cardData": {"license": "apache-2.0"}, "downloads": 900, "likes": 40,
                                             "pipeline_tag": "text-generation"}},
        "acme/qwen-0.5b-nogguf": {"files": {"config.json": config, "model.safetensors": 988 * MB},
                                  "info": {"safetensors": {"parameters": {"BF16": 494_032_768}, "total": 494_032_768},
                                           "downloads": 50, "pipeline_tag": "text-generation"}},
        "acme/qwen-0.5b-gated": {"files": {"config.json": config, "model.safetensors": 988 * MB},
                                 "info": {"gated": "manual", "downloads": 10, "config": {"model_type": "qwen2"}, "pipeline_tag": "text-generation",
                                          "safetensors": {"parameters": {"BF16": 494_032_768}, "total": 494_032_768}}},
        "acme/qwen-0.5b-weird": {"files": {"config.json": json.dumps({**QWEN_CONFIG, "model_type": "weirdformer"})
                                           .encode(), "model.safetensors": 988 * MB},
                                 "info": {"safetensors": {"parameters": {"F32": 494_032_768}, "total": 494_032_768},
                                          "downloads": 5, "pipeline_tag": "text-generation"}},
    }


def test_search_the_fake_hub_with_predictions(home, monkeypatch, calibrated):
    server, url = fake_hub.serve(_repos())
    monkeypatch.setenv("HF_ENDPOINT", url)
    engine = Engine(Settings.from_env(), primary=False, start_threads=False)
    try:
        found = search_models(engine, LOCAL_ADMIN, "qwen 0.5b", context=4096)
    finally:
        engine.close()
        server.shutdown()
    assert not found.offline
    by_id = {m["repo_id"]: m for m in found.models}
    assert list(by_id)[0] == "acme/qwen-0.5b-instruct"   # sorted by downloads
    main_model = by_id["acme/qwen-0.5b-instruct"]
    assert main_model["license"] == "apache-2.0" and main_model["parameters"] == 494_032_768
    assert main_model["runners"] == {"llamacpp": "", "transformers": ""}
    forms = {(p["runner"], p["quant"]): p for p in main_model["predictions"]}
    assert set(forms) == {("llamacpp", "Q4_K_M"), ("llamacpp", "Q8_0"), ("transformers", "fp32")}
    assert forms[("llamacpp", "Q4_K_M")]["download_bytes"] == 398 * MB
    assert forms[("llamacpp", "Q4_K_M")]["kv_cache_bytes"] == 2 * 24 * 2 * 64 * 2 * 4096   # from config.json
    assert main_model["recommended"] is not None
    assert "no GGUF" in by_id["acme/qwen-0.5b-nogguf"]["runners"]["llamacpp"]
    gated = by_id["acme/qwen-0.5b-gated"]
    assert gated["gated"] and gated["predictions"]   # config refused: weights only, no KV cache figure
    assert all(p["kv_cache_bytes"] == 0 for p in gated["predictions"])
    weird = by_id["acme/qwen-0.5b-weird"]
    assert "weirdformer" in weird["runners"]["transformers"] and weird["predictions"] == []


def test_a_hub_that_times_out_or_is_off_lists_the_catalog(home, monkeypatch, calibrated):
    server, url = fake_hub.serve(_repos(), delay_s=3)
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setattr(hub, "TIMEOUT_S", 0.5)
    engine = Engine(Settings.from_env(), primary=False, start_threads=False)
    try:
        found = search_models(engine, LOCAL_ADMIN, "qwen")
        assert "did not answer" in found.offline and found.models == []
        assert {"smollm2-135m-instruct", "gemma-3-270m"} <= {m["name"] for m in found.local}
        with pytest.raises(OfflineError, match="offline mode"):
            browser.estimate("acme/qwen-0.5b-instruct", Settings(home=home, offline=True),
                             engine.catalog)
    finally:
        engine.close()
        server.shutdown()


def test_cli_estimate_a_hub_id_and_an_embedded_model(home, monkeypatch, calibrated, capsys):
    server, url = fake_hub.serve(_repos())
    monkeypatch.setenv("HF_ENDPOINT", url)
    try:
        assert main(["models", "estimate", "acme/qwen-0.5b-instruct", "--context", "2048", "--quant", "Q4_K_M",
                     "--json"]) == 0
    finally:
        server.shutdown()
    result = json.loads(capsys.readouterr().out)
    for key in ("memory_bytes", "decode_tokens_per_s", "prompt_tokens_per_s", "ttft_s", "badge", "download_s"):
        assert key in result
    assert [f["quant"] for f in result["forms"]] == ["Q4_K_M"] and result["source"] == "hub"
    # an embedded model, offline: its GGUF header, no hub
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["models", "estimate", "smollm2-135m-instruct", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["shape"]["layers"] == 30 and result["shape"]["kv_heads"] == 3
    assert {f["runner"] for f in result["forms"]} == {"llamacpp", "transformers"}
    assert main(["models", "estimate", "smollm2-135m-instruct", "--context", "8192"]) == 0
    out = capsys.readouterr().out
    assert "llamacpp Q8_0" in out and "recommended:" in out and "first estimate" in out
    # a hub id offline: one clear line
    assert main(["models", "estimate", "acme/qwen-0.5b-instruct"]) == 1
    err = capsys.readouterr().err
    assert "offline mode is on" in err and "Traceback" not in err
    assert main(["models", "search", "qwen"]) == 0
    captured = capsys.readouterr()
    assert "offline" in captured.err and "gemma-3-270m" in captured.out


def test_replies_measured_here_correct_the_next_prediction(home, calibrated, tiny_causal):
    import time

    engine = Engine(Settings.from_env(), primary=False, start_threads=False)
    try:
        name = engine.catalog.register(engine.catalog.resolve(str(tiny_causal))).name
        first = browser.estimate(name, engine.settings, engine.catalog, engine.store, context=0)
        raw = {p.runner: p for p in first.predictions}["transformers"]
        assert not raw.learned and first.calibration["learned_from_replies"] == 0
        now = time.time()
        engine.store.execute("INSERT INTO conversations (id, title, model, created, updated) VALUES (1, 't', ?, ?, ?)",
                             (name, now, now))
        stats = {"backend": "transformers", "tokens_per_s": raw.decode_tokens_per_s / 2, "ttft_s": None}
        for _ in range(3):
            engine.store.execute("INSERT INTO messages (conversation_id, role, content, stats, created) "
                                 "VALUES (1, 'assistant', 'x', ?, ?)", (json.dumps(stats), now))
        engine.store.execute("INSERT INTO messages (conversation_id, role, content, stats, created) VALUES "
                             "(1, 'assistant', 'x', ?, ?)", (json.dumps({**stats, "backend": "transformers-int8",
                                                                          "tokens_per_s": 1e6}), now))
        second = browser.estimate(name, engine.settings, engine.catalog, engine.store, context=0)
    finally:
        engine.close()
    learned = {p.runner: p for p in second.predictions}["transformers"]
    # the int8 reply is learned for its own form (shape.int8_form), not for fp32's
    assert learned.learned and second.calibration["learned_from_replies"] == 4
    assert "transformers-int8 int8" in second.calibration["decode_correction"]
    assert learned.decode_tokens_per_s == pytest.approx(raw.decode_tokens_per_s / 2, rel=0.02)
