"""The model browser's second round: the decode/prompt formula's terms (KV reads, sampler over the vocabulary,
attention FLOPs), the tiers per machine class (offline, from the browser's own predictions), the GPU read
through device.py (a faked GPU memory figure) with llama.cpp's partial offload, and admission's message
citing the browser's prediction."""
import json

import pytest

from llmos_core.__main__ import main
from llmos_core.device import DeviceChoice
from llmos_core.engine import Engine
from llmos_core.models import browser
from llmos_core.models.browser import calibration as calibration_module
from llmos_core.models.browser import tier_list as tiers_module
from llmos_core.models.browser.calibration import Calibration
from llmos_core.models.browser.predict import Gpu, decode_seconds, predict, prompt_flops
from llmos_core.models.browser.shape import Form, Shape
from llmos_core.settings import Settings

MB, GB = 1024**2, 1024**3
SHAPE = Shape("qwen2", 500_000_000, layers=24, hidden=896, heads=14, kv_heads=2, head_dim=64, vocab=151_936,
              context=32768)
CAL = Calibration(bandwidth=10e9, flops=100e9)


@pytest.fixture
def calibrated(monkeypatch):
    monkeypatch.setattr(calibration_module, "machine", lambda settings, refresh=False: CAL)


def test_decode_reads_the_kv_cache_and_pays_the_sampler_per_vocabulary():
    form = Form("llamacpp", "Q8_0", 500 * MB, 0)
    start, later = decode_seconds(SHAPE, form, CAL, 0), decode_seconds(SHAPE, form, CAL, 2000)
    kv_read = SHAPE.kv_bytes_per_token(2) * 2000 / (CAL.bandwidth * 0.9)
    assert later - start == pytest.approx(kv_read)
    sampled = Calibration(bandwidth=10e9, flops=100e9, sample_s=0.004)
    # a 262,144-entry vocabulary pays the measured 4 ms; this 151,936 one proportionally less
    assert decode_seconds(SHAPE, form, sampled, 0) - start == pytest.approx(0.004 * 151_936 / 262_144)
    # transformers pays its Python ops per layer at the measured op cost
    fp32 = Form("transformers", "fp32", 2000 * MB, 0)
    ops = Calibration(bandwidth=10e9, flops=100e9, op_s=10e-6)
    assert decode_seconds(SHAPE, fp32, ops, 0) - decode_seconds(SHAPE, fp32, CAL, 0) == pytest.approx(24 * 60 * 10e-6)


def test_prompt_flops_add_the_attention_over_earlier_tokens():
    linear = 2.0 * SHAPE.compute_parameters
    assert prompt_flops(SHAPE, 1) == pytest.approx(linear + 4 * 24 * 14 * 64 / 2)
    attention_1k = prompt_flops(SHAPE, 1000) - linear * 1000
    assert attention_1k == pytest.approx(4 * 24 * 14 * 64 * 1000 * 1000 / 2)
    assert prompt_flops(SHAPE, 2000) - linear * 2000 == pytest.approx(4 * attention_1k)   # quadratic


def test_tiers_per_machine_class_offline():
    cpu = browser.tiers(CAL, 16 * GB, None)
    assert cpu.machine_class == "cpu" and not cpu.reference and not cpu.none_well
    assert 1 <= len(cpu.models) <= tiers_module.TIER_SIZE
    assert all(p.badge == "runs well" and p.model in tiers_module.CURATED for p in cpu.models)
    sizes = [p.weights_bytes for p in cpu.models]
    assert sizes == sorted(sizes)
    big = browser.tiers(CAL, 16 * GB, Gpu(free_bytes=80 * GB, bandwidth=2000e9, flops=400e12))
    assert big.machine_class == "big-gpu" and "meta-llama/Llama-3.3-70B-Instruct" in [p.model for p in big.models]
    mid = browser.tiers(CAL, 16 * GB, None, wanted="mid-gpu")   # another class: its reference GPU, said so
    assert mid.reference and mid.gpu == tiers_module.REFERENCE_GPUS["mid-gpu"]
    slow = browser.tiers(Calibration(bandwidth=0.5e9, flops=2e9), 16 * GB, None)
    assert slow.none_well and slow.models and all(p.badge == "runs slowly" for p in slow.models)
    with pytest.raises(Exception, match="unknown machine class"):
        browser.tiers(CAL, 16 * GB, None, wanted="tpu")


def test_cli_tiers_and_search_without_a_query(home, monkeypatch, calibrated, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")   # no hub call is needed
    assert main(["models", "tiers", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["machine_class"] == "cpu" and result["models"]
    assert {"memory_bytes", "decode_tokens_per_s", "ttft_s", "badge"} <= set(result["models"][0])
    assert main(["models", "search"]) == 0
    out = capsys.readouterr().out
    assert "class cpu (this machine)" in out and result["models"][-1]["model"] in out


def test_the_gpu_from_device_py_with_partial_offload(home, monkeypatch, calibrated):
    """A faked GPU: device.py says CUDA with 1.3 GB free; llama.cpp offloads the layers that fit."""
    import llmos_core.device as device
    import llmos_core.training.estimate as training_estimate

    fake = DeviceChoice("cuda", 0, "bfloat16", "Fake GPU", "test")
    monkeypatch.setattr(device, "choose_device", lambda policy="auto", dtype="auto": fake)
    monkeypatch.setattr(device, "free_memory", lambda d: (1300 * MB, 16 * GB))
    monkeypatch.setattr(tiers_module, "_gpu_bandwidth", lambda settings, d: 500e9)
    monkeypatch.setattr(training_estimate, "matmul_flops", lambda dev="cpu", settings=None, refresh=False: 50e12)
    gpu = browser.this_gpu(Settings(home=home))
    assert gpu == Gpu(free_bytes=1300 * MB, bandwidth=500e9, flops=50e12)
    form = Form("llamacpp", "Q8_0", 2400 * MB, 0)   # 100 MB a layer
    p = predict("m", SHAPE, form, CAL, context=1024, gpu=gpu)
    assert p.gpu_layers == int((1300 * MB - p.kv_cache_bytes - p.overhead_bytes) // (100 * MB))
    assert 0 < p.gpu_layers < SHAPE.layers
    cpu = predict("m", SHAPE, form, CAL, context=1024)
    assert p.decode_tokens_per_s > cpu.decode_tokens_per_s and p.ttft_s < cpu.ttft_s
    # transformers: whole or not at all
    assert predict("m", SHAPE, Form("transformers", "bf16", 1400 * MB, 0), CAL, gpu=gpu).gpu_layers == 0
    # an estimate of an embedded model takes the GPU by itself, with no gpu argument
    engine = Engine(Settings(home=home), primary=False, start_threads=False)
    try:
        est = browser.estimate("smollm2-135m-instruct", engine.settings, engine.catalog, context=1024)
    finally:
        engine.close()
    assert est.predictions[0].runner == "llamacpp" and est.predictions[0].gpu_layers > 0


def test_admission_and_the_browser_give_the_same_memory_figure(home, calibrated):
    """One formula: the manager's estimate (what admission reserves) is the browser's memory prediction at the
    context the runner allocates at load, for both runners of an embedded model; a refusal points at it."""
    from llmos_core.errors import InsufficientMemory

    engine = Engine(Settings(home=home, memory_budget=10 * MB), primary=False, start_threads=False)
    try:
        name = "smollm2-135m-instruct"
        for runner in ("llamacpp", "transformers"):
            est = browser.estimate(name, engine.settings, engine.catalog, context=browser.load_context(runner))
            predicted = next(p for p in est.predictions if p.runner == runner)
            assert predicted.memory_bytes == engine.models.estimate(name, runner)
        with pytest.raises(InsufficientMemory) as refused:
            engine.models.load(name, "llamacpp")
        assert f"models estimate {name}" in str(refused.value.hint)
    finally:
        engine.close()


def test_a_form_llama_cpp_cannot_batch_reads_its_prompt_slower():
    """Q4_1 has no batched CPU matmul in llama.cpp (batched_form.UNBATCHED): the same FLOPs at a lower rate."""
    from llmos_core.models.browser.predict import ttft_seconds

    q4_1, q8_0 = (Form("llamacpp", q, 300 * MB, 0) for q in ("Q4_1", "Q8_0"))
    prompt = ttft_seconds(SHAPE, q4_1, CAL, 1000) - decode_seconds(SHAPE, q4_1, CAL, 1000)
    assert prompt / (ttft_seconds(SHAPE, q8_0, CAL, 1000) - decode_seconds(SHAPE, q8_0, CAL, 1000)) \
        == pytest.approx(0.6 / 0.35)
