"""A prediction for one model in one form on this machine, before anything is downloaded or loaded.

memory   = weights (a GGUF as stored; transformers: parameters x dtype, + RUNTIME_OVERHEAD) + the KV cache
           for the context asked for (2 x layers x kv_heads x head_dim x bytes a token) + the runner's fixed
           buffers. With a GPU, llama.cpp offloads as many whole layers as fit (the rest stay in RAM).
decode   = one token reads every weight once (the tied output head reads the whole embedding table):
           time = bytes read / (bandwidth x DECODE_EFFICIENCY) + layers x LAYER_COST_S (kernel calls and,
           on transformers, Python per layer), times the correction learned from replies measured here.
prompt   = 2 x the parameters that are multiplied per token (the embedding is a lookup) FLOPs a token, at
           the matmul benchmark x PROMPT_EFFICIENCY.
ttft     = prompt tokens / prompt speed + one decoding step.
The constants were fitted on this 2-core CPU (bench/estimates.py, docs/figures/h31.md); the learned
corrections replace them as soon as replies of the same runner have been measured.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from .calibration import Calibration
from .shape import LLAMACPP, Form, Shape

RUNTIME_OVERHEAD = {LLAMACPP: 0.0, "transformers": 0.10}   # allocator slack over the tensors (backends.py)
FIXED_BYTES = {LLAMACPP: 48 * 1024**2, "transformers": 30 * 1024**2}   # compute buffers, logits (llamacpp.py)
KV_ELEMENT_BYTES = {LLAMACPP: 2, "transformers": 4}       # llama.cpp keeps K and V in f16; fp32 on transformers
DECODE_EFFICIENCY = {LLAMACPP: 0.9, "transformers": 0.9}
LAYER_COST_S = {LLAMACPP: 0.00015, "transformers": 0.0006}
PROMPT_EFFICIENCY = {LLAMACPP: 0.35, "transformers": 0.5}
TTFT_PROMPT_TOKENS = 1000
SLOW_TOKENS_PER_S = 5.0        # below this, reading an answer waits on the model
SLOW_TTFT_S = 30.0
BADGES = ("runs well", "runs slowly", "too big")


@dataclass
class Gpu:
    free_bytes: int
    bandwidth: float           # bytes/s


@dataclass
class Prediction:
    model: str
    runner: str
    quant: str
    context: int
    memory_bytes: int          # RAM (and GPU memory together) the loaded model takes
    weights_bytes: int
    kv_cache_bytes: int
    overhead_bytes: int
    gpu_bytes: int             # of memory_bytes, on the GPU (0 without one)
    gpu_layers: int
    decode_tokens_per_s: float
    prompt_tokens_per_s: float
    ttft_s: float              # for a TTFT_PROMPT_TOKENS prompt
    download_bytes: int
    download_s: float | None   # None: no download measured here yet
    badge: str = ""
    learned: bool = False      # corrected by replies measured here; False: the first estimate
    budget_bytes: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def predict(name: str, shape: Shape, form: Form, calibration: Calibration, *, context: int = 4096,
            budget_bytes: int = 0, gpu: Gpu | None = None, download_rate: float | None = None,
            corrected: bool = True) -> Prediction:
    runner = form.runner
    weights = int(form.weight_bytes * (1 + RUNTIME_OVERHEAD[runner]))
    kv = shape.kv_bytes_per_token(KV_ELEMENT_BYTES[runner]) * max(context, 0)
    fixed = FIXED_BYTES[runner]
    memory = weights + kv + fixed
    read = form.weight_bytes * _read_fraction(shape)
    gpu_bytes, gpu_layers, gpu_read = _offload(shape, form, gpu, kv + fixed, read)
    seconds = ((read - gpu_read) / (calibration.bandwidth * DECODE_EFFICIENCY[runner])
               + (gpu_read / gpu.bandwidth if gpu and gpu_read else 0.0) + shape.layers * LAYER_COST_S[runner])
    decode_fix, learned_decode = calibration.correction("decode", runner, form.quant) if corrected else (1.0, False)
    decode = decode_fix / seconds
    prompt = calibration.flops * PROMPT_EFFICIENCY[runner] / (2 * max(shape.compute_parameters, 1))
    ttft_fix, learned_ttft = calibration.correction("ttft", runner, form.quant) if corrected else (1.0, False)
    ttft = (TTFT_PROMPT_TOKENS / prompt + seconds) * ttft_fix
    prompt = TTFT_PROMPT_TOKENS / max(ttft - 1 / decode, 1e-6)   # the prompt speed the corrected TTFT implies
    download_s = form.download_bytes / download_rate if form.download_bytes and download_rate else (
        0.0 if not form.download_bytes else None)
    result = Prediction(name, runner, form.quant, context, memory, weights, kv, fixed, gpu_bytes, gpu_layers,
                        round(decode, 2), round(prompt, 1), round(ttft, 3), form.download_bytes, download_s,
                        learned=learned_decode or learned_ttft, budget_bytes=budget_bytes)
    result.badge = badge(result)
    return result


def badge(prediction: Prediction) -> str:
    if prediction.budget_bytes and prediction.memory_bytes - prediction.gpu_bytes > prediction.budget_bytes:
        return "too big"
    if prediction.decode_tokens_per_s < SLOW_TOKENS_PER_S or prediction.ttft_s > SLOW_TTFT_S:
        return "runs slowly"
    return "runs well"


def recommend(predictions: list[Prediction]) -> Prediction | None:
    """The form to take: of those that fit, the largest (least quantized) that still runs well; else the
    fastest that fits; None when none fits."""
    fitting = [p for p in predictions if p.badge != "too big"]
    well = [p for p in fitting if p.badge == "runs well"]
    if well:
        return max(well, key=lambda p: p.weights_bytes)
    return max(fitting, key=lambda p: p.decode_tokens_per_s) if fitting else None


def _read_fraction(shape: Shape) -> float:
    """Share of the weights one decoding step reads: all of them when the head is tied to the embedding;
    an untied embedding table is only looked up (one row)."""
    if shape.tied_embeddings or not shape.parameters:
        return 1.0
    return max(0.1, 1 - shape.embedding_parameters / shape.parameters)


def _offload(shape: Shape, form: Form, gpu: Gpu | None, extra: int, read: float) -> tuple[int, int, float]:
    """(GPU bytes, layers on the GPU, bytes a token reads there). llama.cpp offloads whole layers as far as
    they fit beside the KV cache and buffers; transformers puts the model there whole or not at all."""
    if gpu is None or gpu.free_bytes <= extra or not shape.layers:
        return 0, 0, 0.0
    if form.runner != LLAMACPP:
        total = form.weight_bytes + extra
        return (total, shape.layers, read) if total <= gpu.free_bytes else (0, 0, 0.0)
    per_layer = form.weight_bytes / shape.layers
    layers = min(shape.layers, int((gpu.free_bytes - extra) // per_layer))
    share = layers / shape.layers
    return int(form.weight_bytes * share) + extra, layers, read * share
