"""The model browser's cost model with llama.cpp's calibration probe (runner_probe.py): pure functions, fixed
figures, no timing measured."""
import pytest

from llmos_core.models.browser.calibration import Calibration
from llmos_core.models.browser.predict import (DECODE_EFFICIENCY, LAYER_COST_S, cpu_prompt_flops, decode_seconds,
                                               prompt_flops, ttft_seconds)
from llmos_core.models.browser.runner_probe import BATCHED_PROMPT_SPEEDUP, PROBE_PROMPT, ProbeRun, fit
from llmos_core.models.browser.shape import Form, Shape

MB = 1024**2
SMOL = Shape("llama", 134_515_008, layers=30, hidden=576, heads=9, kv_heads=3, head_dim=64, vocab=49_152)
GEMMA = Shape("gemma3", 268_098_176, layers=18, hidden=640, heads=4, kv_heads=1, head_dim=256, vocab=262_144)
PROBE_FORM = Form("llamacpp", "Q4_1", 98 * MB)
BANDWIDTH = 20e9


def probed(run: ProbeRun, bandwidth: float = BANDWIDTH) -> Calibration:
    fitted = fit(run, SMOL, PROBE_FORM.weight_bytes, bandwidth, DECODE_EFFICIENCY["llamacpp"])
    return Calibration(bandwidth=bandwidth, flops=100e9, layer_s=fitted.layer_s,
                       llamacpp_bandwidth=fitted.bandwidth if fitted.bandwidth > bandwidth else 0.0,
                       llamacpp_prompt_flops=fitted.prompt_flops)


def test_the_probe_model_is_predicted_back_at_its_measured_times():
    run = ProbeRun(decode_s=0.030, prompt_s=0.8, threads=2)
    cal = probed(run)
    position = PROBE_PROMPT + run.tokens // 2
    assert decode_seconds(SMOL, PROBE_FORM, cal, position) == pytest.approx(0.030, rel=1e-6)
    # the prompt: the probe's own FLOPs at the probe's rate (Q4_1 is unbatched: no speed-up)
    assert prompt_flops(SMOL, PROBE_PROMPT) / cpu_prompt_flops(PROBE_FORM, cal) == pytest.approx(0.8, rel=1e-6)


def test_what_is_beyond_the_bytes_is_paid_per_layer():
    slow, quick = probed(ProbeRun(0.060, 1.0, 2)), probed(ProbeRun(0.010, 1.0, 2))
    assert slow.layer_s > quick.layer_s > 0
    bytes_s = (98 * MB + SMOL.kv_bytes_per_token(2) * (PROBE_PROMPT + 8)) / (
        BANDWIDTH * DECODE_EFFICIENCY["llamacpp"])
    assert slow.layer_s == pytest.approx((0.060 - bytes_s) / 30)
    # another model: its own bytes at the bandwidth, ITS layers at the probe's per-layer cost
    gemma = Form("llamacpp", "Q4_K_M", 241 * MB)
    extra = decode_seconds(GEMMA, gemma, slow, 1000) - decode_seconds(GEMMA, gemma, quick, 1000)
    assert extra == pytest.approx(18 * (slow.layer_s - quick.layer_s))
    # twice the bytes (Q8_0 against Q4_1): the bytes' time doubles, the per-layer time does not
    q8 = Form("llamacpp", "Q8_0", 196 * MB)
    assert (decode_seconds(SMOL, q8, slow, 0) - decode_seconds(SMOL, PROBE_FORM, slow, 0)
            == pytest.approx(98 * MB / (BANDWIDTH * DECODE_EFFICIENCY["llamacpp"])))


def test_a_probe_faster_than_the_benchmark_raises_llamacpps_bandwidth():
    cal = probed(ProbeRun(0.002, 1.0, 2, tokens=48))   # 104 MB in 2 ms: faster than 20 GB/s x 0.9
    assert cal.layer_s == 0 and cal.llamacpp_bandwidth > BANDWIDTH
    position = PROBE_PROMPT + 24
    assert decode_seconds(SMOL, PROBE_FORM, cal, position) == pytest.approx(0.002, rel=1e-6)


def test_batched_quantizations_read_prompts_faster_than_the_probes():
    cal = probed(ProbeRun(0.030, 0.8, 2))
    q8 = Form("llamacpp", "Q8_0", 150 * MB)
    assert cpu_prompt_flops(q8, cal) == pytest.approx(BATCHED_PROMPT_SPEEDUP * cpu_prompt_flops(PROBE_FORM, cal))
    assert ttft_seconds(SMOL, q8, cal, 1000) < ttft_seconds(SMOL, PROBE_FORM, cal, 1000)
    # transformers keeps its own figures (the matmul benchmark, the torch op cost)
    fp32 = Form("transformers", "fp32", 4 * SMOL.parameters)
    assert cpu_prompt_flops(fp32, cal) == cpu_prompt_flops(fp32, Calibration(bandwidth=BANDWIDTH, flops=100e9))


def test_without_a_probe_the_constants_apply():
    plain = Calibration(bandwidth=BANDWIDTH, flops=100e9)
    zero = Calibration(bandwidth=BANDWIDTH, flops=100e9, layer_s=0.0)
    assert plain.layer_s is None
    difference = decode_seconds(SMOL, PROBE_FORM, plain, 0) - decode_seconds(SMOL, PROBE_FORM, zero, 0)
    assert difference == pytest.approx(30 * LAYER_COST_S["llamacpp"])


def test_the_calibration_keeps_the_probe_and_reloads_it(tmp_path, monkeypatch):
    from llmos_core.models.browser import calibration as module
    from llmos_core.models.browser import runner_probe
    from llmos_core.settings import Settings
    from llmos_core.training import estimate

    monkeypatch.setattr(module, "measure_bandwidth", lambda: BANDWIDTH)
    monkeypatch.setattr(module, "measure_op", lambda: 3e-6)
    monkeypatch.setattr(module, "measure_sampler", lambda: 1e-3)
    monkeypatch.setattr(module, "measure_matvec", lambda: BANDWIDTH / 3)
    monkeypatch.setattr(estimate, "matmul_flops", lambda *a, **k: 100e9)
    run = ProbeRun(0.030, 0.8, 2)
    monkeypatch.setattr(runner_probe, "measure", lambda bandwidth, threads: (
        run, fit(run, SMOL, PROBE_FORM.weight_bytes, bandwidth, DECODE_EFFICIENCY["llamacpp"])))
    settings = Settings(home=tmp_path)
    measured = module.machine(settings, refresh=True)
    assert measured.layer_s == pytest.approx(probed(run).layer_s) and measured.probe["decode_s"] == 0.030
    monkeypatch.setattr(runner_probe, "measure", lambda bandwidth, threads: pytest.fail("measured again"))
    assert module.machine(settings) == measured   # read back from the data folder
    assert measured.matvec_bandwidth == BANDWIDTH / 3
    # no llama.cpp (or no embedded model): the constants apply, and that is stored too
    monkeypatch.setattr(runner_probe, "measure", lambda bandwidth, threads: None)
    bare = module.machine(settings, refresh=True)
    assert bare.layer_s is None and bare.probe == {} and module.machine(settings).layer_s is None


@pytest.mark.slow
def test_the_probe_runs_llamacpp_on_the_embedded_model(monkeypatch):
    from llmos_core.models.browser import runner_probe

    monkeypatch.setattr(runner_probe, "PROBE_PROMPT", 32)   # the real path, shorter
    monkeypatch.setattr(runner_probe, "PROBE_TOKENS", 4)
    measured = runner_probe.measure(BANDWIDTH, 1)
    if measured is None:
        pytest.skip("llama.cpp or the embedded SmolLM2 is not installed")
    run, fitted = measured
    assert run.decode_s > 0 and run.prompt_s > 0 and run.threads == 1 and run.tokens == 4
    assert fitted.layer_s >= 0 and fitted.prompt_flops > 0 and fitted.bandwidth >= BANDWIDTH


def test_a_token_pays_per_earlier_token_as_the_probe_measured_at_two_depths():
    """Decoded before its prompt (position ~3.5) and after it: the slope is paid per layer per earlier token,
    so a long prompt's tokens are predicted slower than the probe's, and both depths are predicted back."""
    run = ProbeRun(decode_s=0.020, prompt_s=0.8, threads=2, tokens=16, early_decode_s=0.012)
    fitted = fit(run, SMOL, PROBE_FORM.weight_bytes, BANDWIDTH, DECODE_EFFICIENCY["llamacpp"])
    assert fitted.position_s > 0 and fitted.layer_s > 0
    cal = probed(run)
    cal.position_s = fitted.position_s
    assert decode_seconds(SMOL, PROBE_FORM, cal, run.late_position) == pytest.approx(0.020, rel=1e-6)
    assert decode_seconds(SMOL, PROBE_FORM, cal, 3.5) == pytest.approx(0.012, rel=1e-6)
    assert decode_seconds(SMOL, PROBE_FORM, cal, 1200) > 0.030   # the slope goes on past the probe's depth
    flat = fit(ProbeRun(0.020, 0.8, 2, 16, early_decode_s=0.025), SMOL, PROBE_FORM.weight_bytes, BANDWIDTH,
               DECODE_EFFICIENCY["llamacpp"])
    assert flat.position_s == 0   # a noisy early figure above the late one never makes the slope negative
