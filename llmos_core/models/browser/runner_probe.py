"""A seconds-long run of llama.cpp itself, part of this machine's calibration: the embedded SmolLM2-135M GGUF
as it ships (Q4_1, always on disk with the package), reads a PROBE_PROMPT-token prompt in one batch, then
up to PROBE_TOKENS tokens decoded one at a time (PROBE_DECODE_S at most), on the engine's thread count.

Why: the bandwidth benchmark (a torch sum) prices the bytes a token reads, but a llama.cpp token also pays
a cost per layer that is not bytes (about 25 graph nodes a layer, each ended by a join of the threads; on a
loaded 2-core machine a join waits for a descheduled partner: h31b measured 38 ms a token on one thread and
160-894 ms on two). The probe measures it here: what its decode takes beyond its bytes at the measured
bandwidth, divided by its layers (`fit`). Its prompt gives llama.cpp's own prompt rate in FLOP/s, for the
quantizations without a batched CPU matmul (Q4_1 is one, models/batched_form.UNBATCHED); the batched ones
read BATCHED_PROMPT_SPEEDUP times faster (h31b runs 3 and 5: the Q4_1 file took 1.55x and 1.68x its Q8_0
copy's time on the same 1,177 tokens).

A decoded token also pays for every token before it, far beyond the KV bytes it reads (llama.cpp's CPU
attention: SmolLM2 through the engine decoded 52.6 tokens/s after a 40-token prompt and 26.6 after 1,177,
quiet): so the probe decodes EARLY_TOKENS tokens before its prompt as well as after it, and the difference,
per earlier token and per layer, is `position_s`.

`fit` is a pure function of the measured times and the predictor's own formulas (predict.py), so predicting
the probe's model back reproduces the probe's times; every other model and form is predicted from it.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from .. import llama_compute
from .predict import BATCHED_PROMPT_SPEEDUP  # noqa: F401 (the probe's prompt rate is Q4_1's; see predict.py)

PROBE_PROMPT = 256      # tokens read in one batch (~1.5 s quiet; a 128-token batch read at half the per-token
                        # rate of a 512-token one on Q4_1 under load, h31c, so not shorter)
PROBE_TOKENS = 48       # tokens decoded one at a time, at most, and their median: on a loaded machine one
                        # token in 16 can wait a second for its core, and a mean of so few is that wait (h31c);
PROBE_DECODE_S = 3.0    # ... but no longer than this once MIN_TOKENS are in (0.5 s quiet; bounded under load)
MIN_TOKENS = 8
EARLY_TOKENS = 8        # decoded one at a time before the prompt (positions 0-7): the cost of position ~0


@dataclass
class ProbeRun:
    decode_s: float     # median seconds of one decoded token, at position PROBE_PROMPT + tokens / 2
    prompt_s: float     # seconds to read the PROBE_PROMPT tokens
    threads: int
    tokens: int = 16    # tokens decoded
    early_decode_s: float | None = None   # median seconds of one token decoded at positions 0..EARLY_TOKENS-1
                                          # (None: not measured; then the prompt starts at position 0)

    @property
    def late_position(self) -> int:
        return (EARLY_TOKENS if self.early_decode_s is not None else 0) + PROBE_PROMPT + self.tokens // 2


@dataclass
class RunnerFit:
    layer_s: float              # seconds a token spends per layer beyond its bytes (joins, graph, dispatch)
    bandwidth: float            # bytes/s llama.cpp's decode reached: the benchmark's, or more if the probe was faster
    prompt_flops: float         # FLOP/s llama.cpp read the probe's prompt at (an unbatched quantization)
    position_s: float = 0.0     # seconds a token spends per layer per earlier token, beyond those tokens' KV bytes


def probe_path():
    """The embedded SmolLM2 GGUF as shipped (no conversion, no download), or None without the package."""
    from ..catalog import EMBEDDED, embedded_gguf_path

    try:
        return embedded_gguf_path(EMBEDDED["smollm2-135m-instruct"], None)
    except Exception:   # the package is missing: the calibration goes on without the probe
        return None


def run_probe(path, threads: int) -> ProbeRun:
    """Load, warm up, read the prompt, decode; about 2 s on a quiet 2-core machine, up to ~10 s under load."""
    import llama_cpp
    from llama_cpp._internals import LlamaModel
    from llama_cpp._logger import set_verbose

    from ..llamacpp import new_context

    set_verbose(False)
    weights = LlamaModel(path_model=str(path), params=llama_cpp.llama_model_default_params(), verbose=False)
    try:
        ctx = new_context(weights, n_ctx=EARLY_TOKENS + PROBE_PROMPT + PROBE_TOKENS + 8, threads=threads,
                          n_batch=PROBE_PROMPT)
        try:
            memory = llama_cpp.llama_get_memory(ctx)
            _decode(ctx, [weights.token_bos()], 0)   # warm-up: every weight page mapped in
            llama_cpp.llama_memory_clear(memory, True)
            vocab = weights.n_vocab()
            prompt = [(7 + 37 * i) % (vocab - 1) + 1 for i in range(PROBE_PROMPT)]   # any tokens: the cost is the same
            early: list[float] = []
            for position in range(EARLY_TOKENS):
                started = time.perf_counter()
                _decode(ctx, [prompt[-1 - position]], position)
                early.append(time.perf_counter() - started)
            started = time.perf_counter()
            _decode(ctx, prompt, EARLY_TOKENS)
            prompt_s = time.perf_counter() - started
            times: list[float] = []
            while len(times) < PROBE_TOKENS and (len(times) < MIN_TOKENS or sum(times) < PROBE_DECODE_S):
                started = time.perf_counter()
                _decode(ctx, [prompt[len(times)]], EARLY_TOKENS + PROBE_PROMPT + len(times))
                times.append(time.perf_counter() - started)
            decode_s = statistics.median(times)
        finally:
            llama_cpp.llama_free(ctx)
    finally:
        weights.close()
    return ProbeRun(decode_s, prompt_s, threads, len(times), statistics.median(early))


def _decode(ctx, tokens: list[int], position: int) -> None:
    import llama_cpp

    from ...errors import ModelLoadError

    batch = llama_cpp.llama_batch_init(len(tokens), 0, 1)
    try:
        for i, token in enumerate(tokens):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, position + i, 1
            batch.seq_id[i][0], batch.logits[i] = 0, i == len(tokens) - 1
        batch.n_tokens = len(tokens)
        if llama_compute.decode(ctx, batch) != 0:
            raise ModelLoadError("llama.cpp could not evaluate the calibration's tokens")
    finally:
        llama_cpp.llama_batch_free(batch)


def fit(run: ProbeRun, shape, weight_bytes: int, bandwidth: float, decode_efficiency: float) -> RunnerFit:
    """This machine's llama.cpp figures from a probe of a model of `shape` and `weight_bytes`: the decode's
    time beyond its bytes at the benchmark's bandwidth, per layer (none if the probe was faster than the
    benchmark: then llama.cpp reads faster than a torch sum, and its bandwidth is the probe's); the prompt's
    FLOPs over its time."""
    from .predict import KV_ELEMENT_BYTES, prompt_flops, read_fraction
    from .shape import LLAMACPP

    position = run.late_position
    kv_bytes = shape.kv_bytes_per_token(KV_ELEMENT_BYTES[LLAMACPP])
    read = weight_bytes * read_fraction(shape) + kv_bytes * position
    rate = bandwidth * decode_efficiency
    layers = max(shape.layers, 1)
    position_s = 0.0
    if run.early_decode_s is not None:   # the slope between the two depths, less the KV bytes' own part
        early_position = (EARLY_TOKENS - 1) / 2
        slope = (run.decode_s - run.early_decode_s) / (position - early_position) - kv_bytes / rate
        position_s = max(slope, 0.0) / layers
    beyond = run.decode_s - read / rate - layers * position_s * position
    if beyond > 0:
        layer_s = beyond / max(shape.layers, 1)
    else:
        layer_s, rate = 0.0, read / max(run.decode_s - layers * position_s * position, 1e-6)
    return RunnerFit(layer_s, rate / decode_efficiency, prompt_flops(shape, PROBE_PROMPT) / max(run.prompt_s, 1e-6),
                     position_s)


def measure(bandwidth: float, threads: int) -> tuple[ProbeRun, RunnerFit] | None:
    """Probe and fit, or None where llama.cpp or the embedded model is missing (the constants then apply)."""
    from ..llamacpp import availability
    from .predict import DECODE_EFFICIENCY
    from .shape import LLAMACPP, shape_from_gguf

    path = probe_path()
    if path is None or not availability()[0]:
        return None
    run = run_probe(path, threads)
    return run, fit(run, shape_from_gguf(path), path.stat().st_size, bandwidth, DECODE_EFFICIENCY[LLAMACPP])
