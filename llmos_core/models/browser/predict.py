"""A prediction for one model in one form on this machine, before anything is downloaded or loaded.

memory   = weights (a GGUF as stored; transformers: parameters x dtype, + RUNTIME_OVERHEAD) + the KV cache
           for the context asked for (2 x layers x kv_heads x head_dim x bytes a token) + the runner's fixed
           buffers: the same constants the backends' estimate() declares to admission (backends.py,
           llamacpp.py), imported, not copied. With a GPU, llama.cpp offloads as many whole layers as fit
           (the rest stay in RAM); transformers puts the model there whole or not at all.
decode   = a token at position P reads every weight once (the tied output head reads the whole embedding
           table: 168M of Gemma 3 270M's 268M parameters) AND the KV cache of the P tokens before it (about
           16-25% more bytes on SmolLM2 after a 1,000-token prompt: it was missing), at the measured bandwidth
           (the median window, calibration.py; transformers: the weights at torch's measured fp32
           matrix-vector rate, `matvec_bandwidth`, which reached 0.3-0.6 of the sum's); plus what does not scale with bytes: the sampler over the
           vocabulary (measured; a 262k vocabulary pays it at each token) and the per-layer op cost
           (transformers: OPS_PER_LAYER Python-dispatched ops at the measured op_s; llama.cpp: its graph
           nodes' thread joins, `layer_s` measured by running llama.cpp itself on the embedded SmolLM2
           (runner_probe.py), LAYER_COST_S without it), times the correction learned from replies measured here.
prompt   = per token, 2 x the parameters multiplied (the embedding is a lookup; the head runs only on the
           last token) + the attention scores and sums over the tokens before it (4 x layers x heads x
           head_dim x position: 16-18% of the FLOPs at 1,000 tokens on the embedded models, and what the
           TTFT predictions missed by, 1.18-1.27 measured/predicted), at llama.cpp's own prompt rate from
           the probe (x BATCHED_PROMPT_SPEEDUP for the batched quantizations), or the matmul benchmark x
           PROMPT_EFFICIENCY (transformers; llama.cpp without the probe).
ttft     = prompt seconds for the prompt + one decoding step.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..backends import RUNTIME_FIXED, RUNTIME_OVERHEAD as TRANSFORMERS_OVERHEAD
from ..batched_form import UNBATCHED
from ..llamacpp import COMPUTE_FIXED, DRAFT_ROW_BYTES
from ..prefix_cache import cells_for
from .machine import SAMPLE_VOCAB, Calibration
from .shape import LLAMACPP, TRANSFORMERS_INT8, Form, Shape

# The quantizations with a batched CPU matmul read a prompt this many times faster than the probe's Q4_1
# (h31b runs 3 and 5: the Q4_1 file took 1.55x and 1.68x its Q8_0 copy's time on the same 1,177 tokens).
BATCHED_PROMPT_SPEEDUP = 1.6

# transformers-int8 (models/int8.py) is the transformers runner with int8 Linear weights: the same allocator,
# buffers and fp32 KV cache; its weights are read by torch's int8 kernel at the measured int8_matvec_bandwidth.
RUNTIME_OVERHEAD = {LLAMACPP: 0.0, "transformers": TRANSFORMERS_OVERHEAD,   # allocator slack over the tensors
                    TRANSFORMERS_INT8: TRANSFORMERS_OVERHEAD}
FIXED_BYTES = {LLAMACPP: COMPUTE_FIXED, "transformers": RUNTIME_FIXED,     # compute buffers, logits rows
               TRANSFORMERS_INT8: RUNTIME_FIXED}
KV_ELEMENT_BYTES = {LLAMACPP: 2, "transformers": 4, TRANSFORMERS_INT8: 4}   # llama.cpp: f16 K and V; fp32 else
# Of the measured bandwidth, what a matrix-vector product streaming quantized or fp32 weights reaches
# (the benchmark is a plain sum: no dequantization, no second operand). transformers uses the calibration's
# own measured torch matrix-vector rate (Calibration.matvec_bandwidth) instead, where it has one.
DECODE_EFFICIENCY = {LLAMACPP: 0.9, "transformers": 0.9, TRANSFORMERS_INT8: 0.9}
# Per layer and token, what does not scale with bytes. llama.cpp: its graph runs about 25 nodes a layer, each
# ended by a join of its threads, no Python: measured here by the calibration's probe (runner_probe.py,
# Calibration.layer_s); LAYER_COST_S, fitted on this CPU when quiet (h31), only without llama.cpp. transformers:
# the ops of a decoder layer called from Python one by one (norms, q/k/v/o, rotary, cache update, attention,
# gate/up/down, residuals: about 60 on Llama/Gemma layers), each at the measured op_s.
# The probe's figure includes what a loaded machine adds (h31b: a steady ~35 ms a token on all three
# llama.cpp forms at load 7) as far as the load holds still between the calibration and the reply.
LAYER_COST_S = {LLAMACPP: 0.00015, "transformers": 0.0, TRANSFORMERS_INT8: 0.0}
# An Int8Linear's forward is 5 ops (reshape, cast to bf16, the int8 kernel, cast back, reshape) where
# nn.Linear's is one: 4 more for each of a decoder layer's 7 linears (q, k, v, o, gate, up, down).
INT8_EXTRA_OPS = 4 * 7
OPS_PER_LAYER = {LLAMACPP: 0, "transformers": 60, TRANSFORMERS_INT8: 60 + INT8_EXTRA_OPS}
PROMPT_EFFICIENCY = {LLAMACPP: 0.6, "transformers": 0.5, TRANSFORMERS_INT8: 0.5}
# llama.cpp has no batched CPU matmul for these (models/batched_form.UNBATCHED: why Q4_1 is served as a Q8_0
# copy, "prompts read twice as fast"): their prompt runs at the old 0.35. Measured here on the same 1,177
# tokens, Q4_1 as shipped took 1.55x and 1.68x the Q8_0 copy's time (h31b runs 3 and 5), and at 0.35 for
# all, Q8_0 and Q4_K_M came in at 0.53-0.71 of the predicted TTFT while Q4_1 came in at 0.98-1.10.
UNBATCHED_PROMPT_EFFICIENCY = 0.35
GPU_PROMPT_EFFICIENCY = 0.3   # quantized and attention kernels against the bf16 matmul benchmark (not measured here)
TTFT_PROMPT_TOKENS = 1000
SLOW_TOKENS_PER_S = 5.0        # below this, reading an answer waits on the model
SLOW_TTFT_S = 30.0
BADGES = ("runs well", "runs slowly", "too big")


@dataclass
class Gpu:
    free_bytes: int
    bandwidth: float           # bytes/s
    flops: float = 0.0         # FLOP/s of a bf16 matmul (0: unknown, the prompt is priced on the CPU)


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
    prefix_cache_bytes: int = 0   # llama.cpp: the prefix cache's KV cells, allocated at load beside the context's

    def to_dict(self) -> dict:
        return asdict(self)


def predict(name: str, shape: Shape, form: Form, calibration: Calibration, *, context: int = 4096,
            budget_bytes: int = 0, gpu: Gpu | None = None, download_rate: float | None = None,
            corrected: bool = True, prefix_cache_mb: float = 0) -> Prediction:
    """`prefix_cache_mb`: LLMOS_PREFIX_CACHE_MB where the prefix cache is on (0: off); on llama.cpp its cells and
    prompt lookup's logits rows are allocated at load beside the context, and counted as the loader counts them."""
    runner = form.runner
    weights = int(form.weight_bytes * (1 + RUNTIME_OVERHEAD[runner]))
    per_token = shape.kv_bytes_per_token(KV_ELEMENT_BYTES[runner])
    kv = per_token * max(context, 0)
    fixed, cache = FIXED_BYTES[runner], 0
    if runner == LLAMACPP:
        cache = per_token * cells_for(prefix_cache_mb, per_token, max(context, 0))
        fixed += DRAFT_ROW_BYTES * shape.vocab
    memory = weights + kv + cache + fixed
    gpu_bytes, gpu_layers, share = _offload(shape, form, gpu, kv + cache + fixed)
    seconds = decode_seconds(shape, form, calibration, TTFT_PROMPT_TOKENS, gpu, share)
    decode_fix, learned_decode = calibration.correction("decode", runner, form.quant) if corrected else (1.0, False)
    decode = decode_fix / seconds
    ttft_fix, learned_ttft = calibration.correction("ttft", runner, form.quant) if corrected else (1.0, False)
    ttft = ttft_seconds(shape, form, calibration, TTFT_PROMPT_TOKENS, gpu, share) * ttft_fix
    prompt = TTFT_PROMPT_TOKENS / max(ttft - 1 / decode, 1e-6)   # the prompt speed the corrected TTFT implies
    download_s = form.download_bytes / download_rate if form.download_bytes and download_rate else (
        0.0 if not form.download_bytes else None)
    result = Prediction(name, runner, form.quant, context, memory, weights, kv, fixed, gpu_bytes, gpu_layers,
                        round(decode, 2), round(prompt, 1), round(ttft, 3), form.download_bytes, download_s,
                        learned=learned_decode or learned_ttft, budget_bytes=budget_bytes, prefix_cache_bytes=cache)
    result.badge = badge(result)
    return result


def decode_seconds(shape: Shape, form: Form, calibration: Calibration, position: int, gpu: Gpu | None = None,
                   share: float = 0.0) -> float:
    """Uncorrected seconds of one decoding step at `position` (tokens already in the KV cache); `share`:
    the fraction of the layers on the GPU."""
    runner = form.runner
    read = form.weight_bytes * read_fraction(shape) + shape.kv_bytes_per_token(KV_ELEMENT_BYTES[runner]) * position
    probed = runner == LLAMACPP and calibration.layer_s is not None   # this machine's llama.cpp probe
    bandwidth = calibration.llamacpp_bandwidth if probed and calibration.llamacpp_bandwidth else calibration.bandwidth
    # torch's own matrix-vector rate, measured: fp32's, or the int8 kernel's for transformers-int8
    matvec = (calibration.int8_matvec_bandwidth if runner == TRANSFORMERS_INT8
              else calibration.matvec_bandwidth if runner != LLAMACPP else 0.0)
    cpu_rate = matvec or bandwidth * DECODE_EFFICIENCY[runner]
    seconds = read * (1 - share) / cpu_rate + (read * share / gpu.bandwidth if gpu and share else 0.0)
    layer_s = calibration.layer_s if probed else LAYER_COST_S[runner]
    position_s = calibration.position_s * position if probed else 0.0   # attention over the earlier tokens
    per_layer = (layer_s + position_s) * (1 - share) + OPS_PER_LAYER[runner] * calibration.op_s
    return seconds + shape.layers * per_layer + calibration.sample_s * (shape.vocab or SAMPLE_VOCAB) / SAMPLE_VOCAB


def prompt_flops(shape: Shape, tokens: int) -> float:
    """FLOPs to read a prompt of `tokens`: the weights' 2 x parameters a token, and the attention's
    QK^T and AV, 2 x 2 x heads x head_dim each layer for every earlier token (causal: tokens^2 / 2 pairs)."""
    weights = 2.0 * max(shape.compute_parameters, 1) * tokens
    attention = 4.0 * shape.layers * shape.heads * shape.head_dim * tokens * tokens / 2
    return weights + attention


def ttft_seconds(shape: Shape, form: Form, calibration: Calibration, prompt_tokens: int, gpu: Gpu | None = None,
                 share: float = 0.0) -> float:
    """Uncorrected time to the first token of a reply to a `prompt_tokens` prompt: the prompt, then one step."""
    flops = prompt_flops(shape, prompt_tokens)
    on_gpu = share if gpu is not None and gpu.flops else 0.0   # offloaded layers read the prompt on the GPU
    seconds = (flops * (1 - on_gpu) / cpu_prompt_flops(form, calibration)
               + (flops * on_gpu / (gpu.flops * GPU_PROMPT_EFFICIENCY) if on_gpu else 0.0))
    return seconds + decode_seconds(shape, form, calibration, prompt_tokens, gpu, share)


def cpu_prompt_flops(form: Form, calibration: Calibration) -> float:
    """FLOP/s a prompt is read at on the CPU: llama.cpp's own rate where the calibration probed it (an
    unbatched quantization's; the batched ones BATCHED_PROMPT_SPEEDUP times that), else the matmul benchmark
    times the runner's efficiency."""
    unbatched = form.runner == LLAMACPP and form.quant in UNBATCHED.values()
    if form.runner == LLAMACPP and calibration.llamacpp_prompt_flops:
        return calibration.llamacpp_prompt_flops * (1.0 if unbatched else BATCHED_PROMPT_SPEEDUP)
    return calibration.flops * (UNBATCHED_PROMPT_EFFICIENCY if unbatched else PROMPT_EFFICIENCY[form.runner])


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


def read_fraction(shape: Shape) -> float:
    """Share of the weights one decoding step reads: all of them when the head is tied to the embedding;
    an untied embedding table is only looked up (one row)."""
    if shape.tied_embeddings or not shape.parameters:
        return 1.0
    return max(0.1, 1 - shape.embedding_parameters / shape.parameters)


def _offload(shape: Shape, form: Form, gpu: Gpu | None, extra: int) -> tuple[int, int, float]:
    """(GPU bytes, layers on the GPU, the share of each token's reads done there). llama.cpp offloads whole
    layers as far as they fit beside the KV cache and buffers; transformers puts the model there whole or
    not at all."""
    if gpu is None or gpu.free_bytes <= extra or not shape.layers:
        return 0, 0, 0.0
    if form.runner != LLAMACPP:
        total = form.weight_bytes + extra
        return (total, shape.layers, 1.0) if total <= gpu.free_bytes else (0, 0, 0.0)
    per_layer = form.weight_bytes / shape.layers
    layers = min(shape.layers, int((gpu.free_bytes - extra) // per_layer))
    share = layers / shape.layers
    return int(form.weight_bytes * share) + extra, layers, share
