"""The transformers-int8 form: its weight bytes as models/int8.py lays them out, read at the calibration's measured
int8 kernel rate (Calibration.int8_matvec_bandwidth): pure functions, fixed figures."""
import pytest

from llmos_core.models.browser.calibration import Calibration, measure_int8_matvec
from llmos_core.models.browser.predict import INT8_EXTRA_OPS, decode_seconds
from llmos_core.models.browser.shape import Form, Shape, int8_form
from llmos_core.models.int8 import int8_supported

GEMMA = Shape("gemma3", 268_098_176, layers=18, hidden=640, heads=4, kv_heads=1, head_dim=256, vocab=262_144)


def test_int8_weights_are_a_byte_a_parameter_plus_two_scales_a_row():
    form = int8_form(GEMMA)
    # Gemma 3 270M's MLP is 2,048 wide: rows = head 262,144 + 18 x (q 1,024 + k, v 512 + o 640 + gate, up 4,096 + down 640)
    rows = 262_144 + 18 * (1024 + 512 + 640 + 4096 + 640)
    assert form.runner == "transformers-int8"
    assert form.weight_bytes == pytest.approx(GEMMA.parameters + 6 * rows, rel=1e-5)   # the norms: a few rows more
    untied = int8_form(Shape("llama", 2 * 1000 * 64 + 1_000_000, layers=2, hidden=64, heads=2, kv_heads=1,
                             head_dim=32, vocab=1000, tied_embeddings=False))
    assert untied.weight_bytes > 1_000 * 64 * 4   # the untied input embedding stays fp32


def test_int8_weights_are_read_at_the_measured_int8_rate_with_the_casts_ops():
    form = int8_form(GEMMA)
    slow = Calibration(bandwidth=20e9, flops=100e9, op_s=3e-6, sample_s=1e-3, matvec_bandwidth=6e9,
                       int8_matvec_bandwidth=2e9)
    fast = Calibration(bandwidth=20e9, flops=100e9, op_s=3e-6, sample_s=1e-3, matvec_bandwidth=6e9,
                       int8_matvec_bandwidth=4e9)
    assert decode_seconds(GEMMA, form, slow, 0) - decode_seconds(GEMMA, form, fast, 0) == pytest.approx(
        form.weight_bytes * (1 / 2e9 - 1 / 4e9))
    same_bytes = Form("transformers", "fp32", form.weight_bytes)   # fp32's rate 6e9, fewer ops
    fp32_rate = Calibration(**{**slow.__dict__, "int8_matvec_bandwidth": 6e9})
    assert decode_seconds(GEMMA, form, fp32_rate, 0) - decode_seconds(GEMMA, same_bytes, fp32_rate, 0) == pytest.approx(
        GEMMA.layers * INT8_EXTRA_OPS * 3e-6)


@pytest.mark.skipif(not int8_supported(), reason="torch has no int8 weight-only kernel here")
def test_the_int8_kernel_benchmark_gives_a_rate():
    assert measure_int8_matvec() > 1e8
