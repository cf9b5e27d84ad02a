"""transformers decoding priced at torch's own measured matrix-vector rate (Calibration.matvec_bandwidth), and
the calibration measures it with the other benchmarks on the compute thread: pure functions, fixed figures."""
import pytest

from llmos_core.models.browser.calibration import Calibration, measure_matvec
from llmos_core.models.browser.predict import DECODE_EFFICIENCY, decode_seconds
from llmos_core.models.browser.shape import Form, Shape

MB = 1024**2
GEMMA = Shape("gemma3", 268_098_176, layers=18, hidden=640, heads=4, kv_heads=1, head_dim=256, vocab=262_144)
FP32 = Form("transformers", "fp32", 1072 * MB)
GGUF = Form("llamacpp", "Q4_K_M", 240 * MB)


def test_transformers_weights_are_read_at_the_measured_matvec_rate():
    plain = Calibration(bandwidth=20e9, flops=100e9, op_s=3e-6, sample_s=1e-3)
    measured = Calibration(bandwidth=20e9, flops=100e9, op_s=3e-6, sample_s=1e-3, matvec_bandwidth=6e9)
    # only the weights' read changes: at 6 GB/s instead of 20 GB/s x the efficiency
    difference = decode_seconds(GEMMA, FP32, measured, 0) - decode_seconds(GEMMA, FP32, plain, 0)
    assert difference == pytest.approx(FP32.weight_bytes * (1 / 6e9 - 1 / (20e9 * DECODE_EFFICIENCY["transformers"])))
    # llama.cpp's own kernels are not torch's: its price does not move
    assert decode_seconds(GEMMA, GGUF, measured, 0) == decode_seconds(GEMMA, GGUF, plain, 0)


def test_the_matvec_benchmark_gives_a_rate():
    assert measure_matvec() > 1e8   # bytes/s; a 256 MB weight read in under 2.7 s a window
