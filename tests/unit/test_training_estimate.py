"""The estimate (memory, time, steps) and the training knobs' checks."""
from __future__ import annotations

import json
import math
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from llmos_core.errors import InvalidInput
from llmos_core.settings import Settings
from llmos_core.training import estimate as est
from llmos_core.training.params import PRESETS, TrainParams

GB = 1024**3
# Gemma 3 270M, as its config says; DESIGN.md measured its peaks on this CPU (batch 4, block 128).
GEMMA = est.ModelFacts(parameters=268_098_176, hidden=640, layers=18, heads=4, vocab=262_144, intermediate=2048)


SMOLLM2 = est.ModelFacts(parameters=134_515_008, hidden=576, layers=30, heads=9, vocab=49_152, intermediate=1536)


@pytest.mark.parametrize("facts, method, peak_gib", [
    (GEMMA, "lora", 4.45), (SMOLLM2, "lora", 2.71), (SMOLLM2, "full", 3.25)])
def test_memory_matches_the_measured_peaks(facts, method, peak_gib):
    # Worker peak RSS measured by bench/train.py --estimates (batch 4 x 128, fp32 CPU; docs/BENCHMARKS.md).
    estimate = est.memory_bytes(facts, method, "adamw", 4, 128, 8, weight_bytes=4, compute_bytes=4)
    assert estimate == pytest.approx(peak_gib * GB, rel=0.15)


def test_memory_grows_with_what_is_trained_and_the_batch():
    args = dict(weight_bytes=4, compute_bytes=4)
    base = est.memory_bytes(GEMMA, "full", "adamw", 4, 128, 8, **args)
    assert est.memory_bytes(GEMMA, "full", "sgd", 4, 128, 8, **args) < base   # no Adam moments
    assert est.memory_bytes(GEMMA, "full", "adamw", 8, 128, 8, **args) > base
    bf16 = est.memory_bytes(GEMMA, "lora", "adamw", 4, 128, 8, weight_bytes=2, compute_bytes=2)
    assert bf16 < est.memory_bytes(GEMMA, "lora", "adamw", 4, 128, 8, **args)
    assert est.lora_parameters(GEMMA, 16) == 2 * est.lora_parameters(GEMMA, 8)


def test_plan_steps():
    assert est.plan_steps(100, 4, 1, 1, max_steps=7, epochs=3) == 7
    assert est.plan_steps(100, 4, 1, 1, max_steps=0, epochs=1) == 25
    assert est.plan_steps(100, 4, 2, 1, max_steps=0, epochs=2) == 24   # 25 batches -> 12 updates a pass
    assert est.plan_steps(100, 4, 1, 2, max_steps=0, epochs=1) == 13   # two GPUs share the blocks
    assert est.plan_steps(1, 4, 1, 1, max_steps=0, epochs=0.1) == 1


def test_time_uses_the_matmul_benchmark_then_learns_from_runs(tmp_path):
    settings = Settings(home=tmp_path)
    first = est.estimate_time(settings, "m", "lora", "cpu", parameters=1_000_000, steps=10, tokens_per_step=512)
    assert first.flops == 4 * 1_000_000 * 5120 and "matmul benchmark" in first.source   # LoRA: no weight gradients
    assert first.seconds > 0 and math.isfinite(first.seconds) and not first.learned
    full = est.estimate_time(settings, "m", "full", "cpu", parameters=1_000_000, steps=10, tokens_per_step=512,
                             eval_tokens=1000)
    assert full.flops == 6 * 1_000_000 * 5120 + 2 * 1_000_000 * 1000   # validations are forward passes
    # A finished run that achieved 1 GFLOP/s teaches the next estimate of that model.
    achieved = est.record_run(settings, "m", "lora", "cpu", flops=20e9, seconds=20 + 10 * est.STEP_OVERHEAD_S["cpu"],
                              steps=10)
    assert achieved == pytest.approx(1e9)
    second = est.estimate_time(settings, "m", "lora", "cpu", parameters=1_000_000, steps=10, tokens_per_step=512)
    assert "earlier m runs" in second.source and second.learned
    assert second.seconds == pytest.approx(20.48 + 0.2)
    other = est.estimate_time(settings, "other", "lora", "cpu", parameters=1_000_000, steps=10, tokens_per_step=512)
    assert "lora runs on cpu" in other.source
    assert second.cost(3.6) == pytest.approx(second.seconds / 1000) and second.cost(0) is None


def test_the_matmul_benchmark_is_short_and_measured_once_per_data_folder(tmp_path, matmul_benchmarks):
    args = dict(model="m", method="lora", device="cpu", parameters=1_000_000, steps=10, tokens_per_step=512)
    started = time.perf_counter()
    first = est.estimate_time(Settings(home=tmp_path / "a"), **args)
    assert time.perf_counter() - started < 5   # five 80 ms windows timed; more only on a crowded machine
    assert "matmul benchmark" in first.source and first.flops_per_s > 1e9
    # Another Settings on the folder is what another engine or process has: it reads the figure back.
    again = est.estimate_time(Settings(home=tmp_path / "a"), **args)
    assert matmul_benchmarks == ["cpu"] and again.flops_per_s == first.flops_per_s
    cached = json.loads((tmp_path / "a" / "training" / "throughput.json").read_text())
    assert cached == {est.matmul_key("cpu"): pytest.approx(first.flops_per_s / est.DEFAULT_EFFICIENCY["lora"])}
    assert "float32" in est.matmul_key("cpu")
    est.estimate_time(Settings(home=tmp_path / "b"), **args)   # another data folder measures for itself
    assert matmul_benchmarks == ["cpu", "cpu"]


def test_a_figure_from_another_machine_or_the_old_benchmark_is_measured_again(tmp_path, matmul_benchmarks):
    settings = Settings(home=tmp_path)
    est._write_calibration(settings, {"matmul_cpu": 1.0, "matmul cpu float32 elsewhere 64 cores": 2.0})
    assert est.matmul_flops("cpu", settings) > 1e9
    assert matmul_benchmarks == ["cpu"]
    assert est.matmul_flops("cpu", settings, refresh=True) > 1e9 and len(matmul_benchmarks) == 2


def test_sessions_asking_at_once_share_one_measurement(tmp_path, matmul_benchmarks):
    settings = Settings(home=tmp_path)   # concurrent runs would each measure half the machine, and stick
    with ThreadPoolExecutor(4) as pool:
        figures = list(pool.map(lambda _: est.matmul_flops("cpu", settings), range(4)))
    assert matmul_benchmarks == ["cpu"] and len(set(figures)) == 1


def test_format_seconds():
    assert est.format_seconds(42.4) == "42 s"
    assert est.format_seconds(125) == "2 min 05 s"
    assert est.format_seconds(3 * 3600 + 60) == "3 h 01 min"
    assert est.format_seconds(None) == "N/A"


@pytest.mark.parametrize("change, message", [
    ({"learning_rate": 0}, "would never change"),
    ({"learning_rate": float("nan")}, "would never change"),
    ({"learning_rate": 5}, "far too high"),
    ({"method": "qlora"}, "unknown method"),
    ({"max_steps": 0, "epochs": 0}, "no length"),
    ({"batch_size": 0}, "batch size 0"),
    ({"name": "bad name!"}, "cannot be used"),
    ({"optimizer": "lion"}, "unknown optimizer"),
    ({"bogus": 1}, "unknown training setting"),
    ({"model": ""}, "no model"),
])
def test_params_refuse_bad_values(change, message):
    with pytest.raises(InvalidInput, match=message):
        TrainParams.from_dict({"model": "m", "data": "d.txt", **change})


def test_params_coerce_form_values_and_presets_are_valid():
    p = TrainParams.from_dict({"model": "m", "data": "d", "max_steps": "12", "learning_rate": "0.001",
                               "merge": "false", "batch_size": 2.0})
    assert (p.max_steps, p.learning_rate, p.merge, p.batch_size) == (12, 0.001, False, 2)
    for preset in PRESETS.values():
        TrainParams.from_dict({"model": "m", "data": "d", **preset})
    assert TrainParams(model="gemma-3-270m", data="d").describe() == "LoRA on gemma-3-270m"


def test_before_conversion_the_first_estimate_has_the_models_shape_and_a_time(tmp_path):
    from llmos_core.training import job

    # Gemma's GGUF is assembled (2 s) but not converted: the header gives the shape, the characters the tokens.
    settings = Settings(home=tmp_path / "home", threads=1)
    notes = tmp_path / "notes.txt"
    notes.write_text("\n\n".join(f"Note {i}: the weather was mild and the river high today." for i in range(400)))
    figures = job.estimate({"model": "gemma-3-270m", "data": str(notes), "max_steps": 0, "epochs": 1.0}, settings)
    plan = figures["plan"]
    assert plan["guessed"] and 4000 < plan["tokens"] < 8000   # ~14 tokens a note, by the characters
    assert figures["seconds"] > 0 and not figures["time"]["learned"] and "first estimate" in figures["time"]["source"]
    measured = est.memory_bytes(GEMMA, "lora", "adamw", 4, 128, 8, weight_bytes=4, compute_bytes=4)
    assert figures["memory_bytes"] == pytest.approx(measured, rel=0.01)   # the header's shape, not a guess
