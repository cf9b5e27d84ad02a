"""Before launch: how much memory a training run needs (the scheduler admits on it), how long it takes,
and what it costs. After the run, the same figures sit beside the measured ones.

Memory = the process and its tokenizer + weights + optimizer state + the larger of the gradients and the
activations (logits included), each from the model's shape (the GGUF header's before conversion); checked
against the measured peaks of both embedded models, LoRA and full (bench/train.py --estimates).
Time = FLOPs / throughput + steps x a fixed per-step cost. FLOPs per token: 2 x parameters forward, as
much again for the gradients of the activations, and (full fine-tuning only) as much again for the
weights' gradients: 6 x parameters full, 4 x under LoRA (its adapters are too small to count); the
validations during the run are forward passes, 2 x parameters a token. The parameter count comes from the
GGUF header before the model is converted. The throughput is measured on this machine: a matmul benchmark
(the best of five short windows, under a second in all, cached in the data folder per machine, device and
dtype) times an efficiency, DEFAULT_EFFICIENCY until finished runs teach it (the achieved figure of the last runs of the same model,
method and device): the first estimate, marked as such on the page.
"""
from __future__ import annotations

import json
import math
import os
import platform
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import format_bytes
from ..present import format_duration
from ..settings import Settings

FLOPS_PER_PARAM_TOKEN = {"full": 6, "lora": 4}   # forward 2 + activation gradients 2 + weight gradients 2
EVAL_FLOPS_PER_PARAM_TOKEN = 2                      # a validation is a forward pass
# Preference methods: forward passes beside the policy's own, per token of a sequence. DPO: the reference's;
# ORPO: none (no reference); KTO: the reference's, and the policy's and the reference's on the mismatched
# replies of its KL term (both without gradients).
EXTRA_FORWARDS = {"dpo": 1, "orpo": 0, "kto": 3}
# Sequences a preference item puts through the model with gradients kept: a pair's chosen and rejected; a KTO
# reply and, transiently, the mismatched one of its KL term (counted whole: errs high).
SEQUENCES = {"dpo": 2, "orpo": 2, "kto": 2}
FLOPS_MODEL = 2   # runs recorded under the old count (6 x parameters for LoRA too) are not learned from
# Fraction of the matmul benchmark (the best of its windows) a training step reaches, before any run has been
# measured here: fitted to two rounds of first runs (fresh data folders, 6 steps of 4 x 128 tokens) of both
# embedded models on a quiet 2-core CPU, `bench/train.py --estimates` (docs/BENCHMARKS.md, Training). LoRA ran
# at 0.38-0.48 of the benchmark, full fine-tuning at 0.27-0.41 (AdamW's pass over every weight is memory-bound);
# the same run's time moves by up to a quarter between rounds here, so these are the middle of the runs.
DEFAULT_EFFICIENCY = {"lora": 0.40, "full": 0.34}
STEP_OVERHEAD_S = {"cpu": 0.02, "cuda": 0.01}   # optimizer step, dataloader, callbacks: cost per step not per token
FIXED_BYTES = 450 * 1024**2        # the worker with torch, transformers and peft imported (RSS measured here)
TOKENIZER_BYTES_PER_TOKEN = 1000   # a fast tokenizer in memory, per vocabulary entry
LOGIT_COPIES = 4                   # logits, log-softmax, and the gradients of both in the backward pass
SCORE_COPIES = 3                   # attention scores, their softmax, and its gradient
OPTIMIZER_BYTES = {"adamw": 8, "sgd": 0}   # fp32 state per trained parameter (AdamW: two moments)


@dataclass
class ModelFacts:
    """What the estimate needs to know about a model, read from its config without loading weights."""
    parameters: int
    hidden: int = 0
    layers: int = 0
    heads: int = 0
    vocab: int = 0
    intermediate: int = 0
    converts: bool = False   # the run first converts the GGUF (gguf_bytes) to an fp32 folder
    gguf_bytes: int = 0

    @classmethod
    def from_folder(cls, folder: Path, parameters: int) -> "ModelFacts":
        config = json.loads((folder / "config.json").read_text())
        config = config.get("text_config", config)   # multimodal configs nest the language model's
        return cls(parameters=parameters, hidden=int(config.get("hidden_size") or config.get("d_model") or 0),
                   layers=int(config.get("num_hidden_layers") or config.get("n_layer") or 0),
                   heads=int(config.get("num_attention_heads") or config.get("n_head") or 0),
                   vocab=int(config.get("vocab_size") or 0),
                   intermediate=int(config.get("intermediate_size") or config.get("n_inner") or 0))

    @classmethod
    def from_gguf(cls, summary: dict) -> "ModelFacts":
        """From fetch.read_gguf_summary: what the header says, before the model is converted."""
        shape = summary.get("shape", {})
        return cls(parameters=summary["parameters"], converts=True, gguf_bytes=int(summary.get("file_bytes", 0)),
                   **{k: int(shape[k]) for k in ("hidden", "layers", "heads", "vocab", "intermediate") if k in shape})


def lora_parameters(facts: ModelFacts, r: int) -> int:
    """Adapter size for every attention and MLP projection: r x (in + out) per matrix; q, k, v, o and the
    three MLP matrices of a layer have widths summing to about 8 x hidden + 3 x (hidden + intermediate)."""
    if not facts.hidden or not facts.layers:
        return int(facts.parameters * 0.01 * r / 8)
    return facts.layers * r * (8 * facts.hidden + 3 * (facts.hidden + _intermediate(facts)))


def _intermediate(facts: ModelFacts) -> int:
    return facts.intermediate or 4 * facts.hidden


def activation_bytes(facts: ModelFacts, method: str, batch: int, block: int, dtype_bytes: int) -> int:
    """What the backward pass keeps per token and layer, in values: the norms' inputs and outputs and the
    residuals (8 x hidden), attention's q, k, v before and after rotation, k and v repeated for grouped
    heads and the output (6 x hidden), the MLP's gate, up, activation and product (4 x intermediate); under
    LoRA the dropped-out copies of the adapted projections' inputs add 6 x hidden + intermediate. The
    attention scores, heads x block per token and layer, SCORE_COPIES of them (scores, softmax, and its
    gradient: the CPU's SDPA computes them whole). Then the logits in fp32, LOGIT_COPIES of them."""
    tokens = batch * block
    if not facts.hidden or not facts.layers:
        return int(facts.parameters * dtype_bytes * tokens / 512)
    inter = _intermediate(facts)
    per_token_layer = 14 * facts.hidden + 4 * inter
    if method == "lora":
        per_token_layer += 6 * facts.hidden + inter
    per_token_layer += SCORE_COPIES * max(facts.heads, 1) * block
    logits = tokens * facts.vocab * 4 * LOGIT_COPIES
    return facts.layers * tokens * per_token_layer * dtype_bytes + logits


def flops_per_param_token(key: str) -> int:
    """FLOPs per parameter and token for an estimate key: "lora", "full", or "dpo-lora", "kto-full", ..."""
    method, _, tuning = key.partition("-")
    if not tuning:
        return FLOPS_PER_PARAM_TOKEN.get(method, 6)
    return FLOPS_PER_PARAM_TOKEN[tuning] + EVAL_FLOPS_PER_PARAM_TOKEN * EXTRA_FORWARDS.get(method, 0)


def preference_memory_bytes(facts: ModelFacts, method: str, tuning: str, optimizer: str, batch: int, block: int,
                            lora_r: int, weight_bytes: int, compute_bytes: int) -> int:
    """A preference run: the tuning's run over SEQUENCES x batch sequences, plus the reference model where one is
    kept apart (full fine-tuning of DPO and KTO: a frozen fp32 copy; under LoRA the base with the adapter off
    is the reference, and its forward passes keep nothing for the backward pass)."""
    peak = memory_bytes(facts, tuning, optimizer, SEQUENCES.get(method, 2) * batch, block, lora_r, weight_bytes,
                        compute_bytes)
    if tuning == "full" and EXTRA_FORWARDS.get(method):
        peak += facts.parameters * 4
    return peak


def conversion_bytes(facts: ModelFacts) -> int:
    """Peak of converting the GGUF (fetch.convert_gguf, in its own process before a first run): the file
    mapped, the de-quantized fp32 weights and their copy while written, the tokenizer's vocabulary."""
    return FIXED_BYTES + facts.gguf_bytes + 2 * 4 * facts.parameters + facts.vocab * TOKENIZER_BYTES_PER_TOKEN


def memory_bytes(facts: ModelFacts, method: str, optimizer: str, batch: int, block: int, lora_r: int,
                 weight_bytes: int, compute_bytes: int) -> int:
    """Peak bytes of a run: the process, the tokenizer, weights in `weight_bytes` per parameter (fp32 master
    weights when full), optimizer state in fp32 for the trained parameters, and the larger of their fp32
    gradients and the activations in `compute_bytes`: the backward pass frees a layer's activations as it
    fills in its gradients, so the two never peak together (full fine-tuning of SmolLM2 135M peaked 0.6 GB
    under their sum). A first run converts the GGUF before, and the larger peak counts."""
    trained = facts.parameters if method == "full" else lora_parameters(facts, lora_r)
    weights = facts.parameters * (4 if method == "full" else weight_bytes)
    if method == "lora":
        weights += trained * 4
    state = trained * OPTIMIZER_BYTES.get(optimizer, 8)
    process = FIXED_BYTES + facts.vocab * TOKENIZER_BYTES_PER_TOKEN
    peak = process + weights + state + max(trained * 4, activation_bytes(facts, method, batch, block, compute_bytes))
    return int(max(peak, conversion_bytes(facts) if facts.converts else 0))


# ---------------------------------------------------------------- throughput

def _calibration_path(settings: Settings) -> Path:
    return settings.home / "training" / "throughput.json"


def _read_calibration(settings: Settings) -> dict:
    try:
        return json.loads(_calibration_path(settings).read_text())
    except (OSError, ValueError):
        return {}


def _write_calibration(settings: Settings, data: dict) -> None:
    path = _calibration_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp")   # the app and a worker may both write
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


# The matmul benchmark: TRIES short timed windows, PAUSE_S apart, the fastest kept. One quarter-second window
# read 100 to 177 GFLOP/s on the same quiet 2-core machine (a neighbour's burst, a scheduler hiccup); the best
# of several spaced windows is the machine's figure, which training runs minutes long get on average.
BENCH_TRIES = 5
BENCH_WINDOW_S = 0.08
BENCH_PAUSE_S = 0.1
_bench_lock = threading.Lock()   # two sessions benchmarking at once would each measure half the machine


def matmul_key(device: str) -> str:
    """What a matmul figure holds for: this machine, the device (its name on CUDA) and the dtype."""
    if device == "cpu":
        return f"matmul cpu float32 {platform.node()} {os.cpu_count()} cores"
    import torch

    return f"matmul cuda bfloat16 {platform.node()} {torch.cuda.get_device_name()}"


def matmul_flops(device: str = "cpu", settings: Settings | None = None, refresh: bool = False) -> float:
    """FLOP/s of a square matmul on this machine (fp32 on the CPU, bf16 on CUDA). Measured once per
    machine, device and dtype into the data folder; the measurement takes well under a second."""
    key = matmul_key(device)
    with _bench_lock:
        if settings is not None and not refresh:
            cached = _read_calibration(settings).get(key)
            if cached:
                return float(cached)
        flops = _measure_matmul(device)
        if settings is not None:
            data = _read_calibration(settings)
            data[key] = flops
            _write_calibration(settings, data)
    return flops


def _measure_matmul(device: str) -> float:
    import torch

    # 1024 fp32 gives what 2048 gave on this CPU (about 180 GFLOP/s on 2 cores) at an eighth of the work a run.
    n, dtype = (1024, torch.float32) if device == "cpu" else (8192, torch.bfloat16)
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    return best_rate(lambda: a @ b, 2 * n**3, device)


def best_rate(step, work: float, device: str = "cpu") -> float:
    """Work per second of `step` (each call does `work`: FLOPs, bytes): after a warm-up call, the best of
    BENCH_TRIES windows of BENCH_WINDOW_S, BENCH_PAUSE_S apart. The model browser's bandwidth uses it too."""
    step()   # warm-up: thread pool, kernels, pages touched
    _sync(device)
    best = 0.0
    for attempt in range(BENCH_TRIES):
        if attempt:
            time.sleep(BENCH_PAUSE_S)
        runs, started = 0, time.perf_counter()
        while runs < 2 or time.perf_counter() - started < BENCH_WINDOW_S:
            step()
            _sync(device)   # each run timed to its end: queued CUDA kernels would run on past the window
            runs += 1
        best = max(best, work * runs / (time.perf_counter() - started))
    return best


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def run_flops(method: str, parameters: int, tokens: int, eval_tokens: int = 0) -> float:
    """FLOPs of a run: `tokens` trained, `eval_tokens` forward only (the validations during the run)."""
    return float(flops_per_param_token(method) * parameters * tokens
                 + EVAL_FLOPS_PER_PARAM_TOKEN * parameters * eval_tokens)


def learned_throughput(settings: Settings, model: str, method: str, device: str) -> tuple[float | None, str]:
    """(FLOP/s, where from) out of earlier runs: same model first, then any model with this method and device."""
    runs = [r for r in _read_calibration(settings).get("runs", []) if r.get("flops_model") == FLOPS_MODEL]
    for same_model in (True, False):
        found = [r["flops_per_s"] for r in runs if r["method"] == method and r["device"] == device
                 and (r["model"] == model or not same_model)]
        if found:
            recent = sorted(found[-5:])
            which = f"{model} runs" if same_model else f"{method} runs on {device}"
            return recent[len(recent) // 2], f"median of {len(recent)} earlier {which}"
    return None, ""


def record_run(settings: Settings, model: str, method: str, device: str, flops: float, seconds: float,
               steps: int) -> float:
    """Teach the estimate what a finished run achieved; returns that FLOP/s."""
    compute_s = max(seconds - steps * STEP_OVERHEAD_S.get(device, 0.02), seconds * 0.1)
    achieved = flops / compute_s
    data = _read_calibration(settings)
    data["runs"] = (data.get("runs", []) + [{"model": model, "method": method, "device": device,
                                             "flops_per_s": achieved, "ts": time.time(),
                                             "flops_model": FLOPS_MODEL}])[-50:]
    _write_calibration(settings, data)
    return achieved


@dataclass
class TimeEstimate:
    steps: int
    tokens: int
    flops: float
    flops_per_s: float
    seconds: float
    source: str              # where the throughput came from, shown beside the figure
    learned: bool = False    # from finished runs here; False: a first estimate from the matmul benchmark

    def cost(self, price_per_hour: float | None) -> float | None:
        return None if not price_per_hour else self.seconds / 3600 * price_per_hour

    def to_dict(self) -> dict:
        return {"steps": self.steps, "tokens": self.tokens, "flops": self.flops, "flops_per_s": self.flops_per_s,
                "seconds": self.seconds, "source": self.source, "learned": self.learned}


def estimate_time(settings: Settings, model: str, method: str, device: str, parameters: int, steps: int,
                  tokens_per_step: int, eval_tokens: int = 0, workers: int = 1, trained_parameters: int = 0
                  ) -> TimeEstimate:
    """`tokens_per_step` counts every worker's batch. With `workers` > 1 (Ray Train) the compute divides
    among them, and each step pays an all-reduce of the trained parameters' gradients (allreduce_seconds)."""
    tokens = steps * tokens_per_step
    flops = run_flops(method, parameters, tokens, eval_tokens)
    throughput, source = learned_throughput(settings, model, method, device)
    learned = throughput is not None
    if throughput is None:
        peak = matmul_flops("cuda" if device == "cuda" else "cpu", settings)
        efficiency = DEFAULT_EFFICIENCY.get(method.rpartition("-")[2], 1.0)   # "dpo-lora": LoRA's
        throughput = peak * efficiency
        source = (f"first estimate: {parameters / 1e6:.0f}M parameters at the matmul benchmark's "
                  f"{peak / 1e9:.0f} GFLOP/s x {efficiency}")
    seconds = flops / (throughput * workers) + steps * STEP_OVERHEAD_S.get(device, 0.02)
    if workers > 1:
        seconds += steps * allreduce_seconds(trained_parameters, workers, device) + WORKER_GROUP_START_S
        source += f"; {workers} workers: each step's gradient all-reduce and the workers' start added"
    return TimeEstimate(steps, tokens, flops, throughput * workers, seconds, source, learned)


def eval_interval(eval_every: int, steps: int) -> int:
    """Steps between validations: the setting, or about ten in the run."""
    return eval_every or max(1, steps // 10)


# Data-parallel training across nodes (Ray Train): a ring all-reduce moves 2 (N-1)/N of the gradient
# bytes through each worker's link, plus a latency per step. 1 GB/s is 10 GbE less overheads (gloo on
# the CPU); NVLink or InfiniBand are faster, so this errs long. The worker group's start (the Ray Train
# controller and worker actors, each importing torch and loading the model) is what a 2-worker job took
# beyond a 1-worker one in bench/cluster.py on a quiet 2-core machine (load average about 1.5, both nodes
# on it, 12 steps of about the same length): 24, 27, 27 and 34 s in four runs, median 27 s
# (docs/BENCHMARKS.md). Nodes with cores of their own start their workers side by side: this errs long there.
LINK_BYTES_PER_S = {"cpu": 1e9, "cuda": 10e9}
ALLREDUCE_LATENCY_S = 0.005
WORKER_GROUP_START_S = 27.0


def allreduce_seconds(trained_parameters: int, workers: int, device: str) -> float:
    """Seconds one step's fp32 gradient all-reduce takes among `workers` (0 for one worker)."""
    if workers <= 1:
        return 0.0
    moved = 2 * (workers - 1) / workers * trained_parameters * 4
    return ALLREDUCE_LATENCY_S + moved / LINK_BYTES_PER_S.get(device, 1e9)


def plan_steps(train_blocks: int, batch: int, grad_accum: int, world: int, max_steps: int, epochs: float) -> int:
    """Optimizer steps the Trainer will take: max_steps, else epochs over the blocks."""
    if max_steps > 0:
        return max_steps
    per_epoch = max(1, math.ceil(train_blocks / (batch * world)) // grad_accum)
    return max(1, math.ceil(per_epoch * epochs))


format_seconds = format_duration   # the old name, kept for callers outside the presentation layer


__all__ = ["ModelFacts", "memory_bytes", "estimate_time", "allreduce_seconds", "plan_steps", "record_run",
           "matmul_flops", "format_seconds", "format_bytes", "TimeEstimate"]
