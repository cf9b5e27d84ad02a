"""This machine's measured figures as the predictor reads them (calibration.py measures and stores them): a
module of its own so that predict.py, which prices a token with them, and calibration.py, whose probe fits
them with predict.py's formulas, do not import each other."""
from __future__ import annotations

from dataclasses import dataclass, field

SAMPLE_VOCAB = 262_144    # Gemma 3's vocabulary; the cost is scaled linearly to other vocabularies


@dataclass
class Calibration:
    bandwidth: float                  # bytes/s a full-thread read of a large tensor reaches
    flops: float                      # FLOP/s of an fp32 matmul (training/estimate.py's benchmark)
    measured_at: float = 0.0
    op_s: float = 0.0                 # seconds of one small torch op called from Python (median)
    sample_s: float = 0.0             # seconds the sampler takes over a SAMPLE_VOCAB logits row (median)
    # llama.cpp's own run here (runner_probe.py); None: not probed (no llama.cpp), predict.py's constants apply
    layer_s: float | None = None      # a decoded token's seconds per layer beyond its bytes
    position_s: float = 0.0           # ... and per layer per token before it (llama.cpp's attention)
    llamacpp_bandwidth: float = 0.0   # bytes/s its decode reached, where faster than the benchmark's (else 0)
    llamacpp_prompt_flops: float = 0.0   # FLOP/s it read the probe's prompt at (an unbatched quantization)
    probe: dict = field(default_factory=dict)   # the probe's measured times, for the record
    # (runner, quant) -> measured / predicted, for decoding and for time to first token; "runner" alone as
    # the fallback for a quantization not run here yet.
    decode_correction: dict[str, float] = field(default_factory=dict)
    ttft_correction: dict[str, float] = field(default_factory=dict)
    samples: int = 0                  # the replies the corrections came from
    # bytes/s torch's fp32 matrix-vector product reads a large weight at (transformers decodes with it);
    # 0: not measured (a calibration stored before it), bandwidth x DECODE_EFFICIENCY applies
    matvec_bandwidth: float = 0.0
    # bytes/s torch's int8 weight-only kernel (aten._weight_int8pack_mm, bf16 row: the transformers-int8
    # runner's, models/int8.py) reads a large int8 weight at; 0: not measured (no such kernel here)
    int8_matvec_bandwidth: float = 0.0

    def correction(self, kind: str, runner: str, quant: str) -> tuple[float, bool]:
        table = self.decode_correction if kind == "decode" else self.ttft_correction
        for key in (f"{runner} {quant}", runner):
            if key in table:
                return table[key], True
        return 1.0, False
