"""Before launch: how much memory a training run needs (the scheduler admits on it), how long it takes,
and what it costs. After the run, the same figures sit beside the measured ones.

Memory = weights + (gradients + optimizer state) of the trained parameters + activations + logits.
Calibrated on Gemma 3 270M on this CPU (DESIGN.md): LoRA r=8, batch 4 x 128 -> 4.5 GB peak; full -> 7.3 GB.
Time = FLOPs / throughput + steps x a fixed per-step cost, with FLOPs = 6 x parameters x tokens.
The throughput is measured on this machine: a matmul benchmark (a quarter of a second, cached in the data
folder per machine, device and dtype) times an efficiency that finished runs teach (the achieved figure of
the last runs of the same model, method and device).
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

FLOPS_PER_PARAM_TOKEN = 6          # forward 2 + backward 4 (Kaplan et al.)
# Fraction of the matmul benchmark a training step reaches, before any run has been measured here.
# From Gemma 270M on 2 CPU cores (LoRA 169 tokens/s against the matmul figure); a guess until a run teaches it.
DEFAULT_EFFICIENCY = {"lora": 1.6, "full": 0.8}
STEP_OVERHEAD_S = {"cpu": 0.02, "cuda": 0.01}   # optimizer step, dataloader, callbacks: cost per step not per token
FIXED_BYTES = 450 * 1024**2        # the Python process with torch and transformers imported (RSS measured here)
LOGIT_COPIES = 4                   # logits, their float copy, log-softmax, and its gradient
SLACK = 1.1                        # allocator fragmentation: measured peaks sit 5-10% above the sum of tensors
OPTIMIZER_BYTES = {"adamw": 8, "sgd": 0}   # fp32 state per trained parameter (AdamW: two moments)


@dataclass
class ModelFacts:
    """What the estimate needs to know about a model, read from its config without loading weights."""
    parameters: int
    hidden: int = 0
    layers: int = 0
    heads: int = 0
    vocab: int = 0

    @classmethod
    def from_folder(cls, folder: Path, parameters: int) -> "ModelFacts":
        config = json.loads((folder / "config.json").read_text())
        config = config.get("text_config", config)   # multimodal configs nest the language model's
        return cls(parameters=parameters, hidden=int(config.get("hidden_size") or config.get("d_model") or 0),
                   layers=int(config.get("num_hidden_layers") or config.get("n_layer") or 0),
                   heads=int(config.get("num_attention_heads") or config.get("n_head") or 0),
                   vocab=int(config.get("vocab_size") or 0))


def lora_parameters(facts: ModelFacts, r: int) -> int:
    """Adapter size for every attention and MLP projection: about 2 x r x (in + out) per matrix, seven
    matrices a layer whose widths sum to about 14 x hidden (q, k, v, o and the three MLP ones)."""
    if not facts.hidden or not facts.layers:
        return int(facts.parameters * 0.01 * r / 8)
    return facts.layers * r * 14 * facts.hidden * 2


def activation_bytes(facts: ModelFacts, batch: int, block: int, dtype_bytes: int) -> int:
    """Per layer s*b*h*(34 + 5*a*s/h) half-precision bytes (Korthikanti et al. 2022), scaled to the dtype,
    plus the logits, which dominate small models with big vocabularies."""
    tokens = batch * block
    if not facts.hidden or not facts.layers:
        return int(facts.parameters * dtype_bytes * tokens / 512)
    per_layer = tokens * (34 * facts.hidden + 5 * max(facts.heads, 1) * block) * dtype_bytes // 2
    logits = tokens * facts.vocab * 4 * LOGIT_COPIES
    return facts.layers * per_layer + logits


def memory_bytes(facts: ModelFacts, method: str, optimizer: str, batch: int, block: int, lora_r: int,
                 weight_bytes: int, compute_bytes: int) -> int:
    """Peak bytes of a run: weights in `weight_bytes` per parameter (fp32 master weights when full),
    gradients and optimizer state in fp32 for the trained parameters, activations in `compute_bytes`."""
    trained = facts.parameters if method == "full" else lora_parameters(facts, lora_r)
    weights = facts.parameters * (4 if method == "full" else weight_bytes)
    if method == "lora":
        weights += trained * 4
    state = trained * (4 + OPTIMIZER_BYTES.get(optimizer, 8))
    return int(SLACK * (weights + state + activation_bytes(facts, batch, block, compute_bytes)) + FIXED_BYTES)


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


BENCH_SECONDS = 0.25   # the timed part of the matmul benchmark: long enough to steady, short enough not to be noticed
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
    a @ b   # warm-up: thread pool, kernels
    _sync(device)
    runs, started = 0, time.perf_counter()
    while runs < 2 or time.perf_counter() - started < BENCH_SECONDS:
        a @ b
        _sync(device)   # each run timed to its end: queued CUDA kernels would run on past the budget
        runs += 1
    return 2 * n**3 * runs / (time.perf_counter() - started)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def learned_throughput(settings: Settings, model: str, method: str, device: str) -> tuple[float | None, str]:
    """(FLOP/s, where from) out of earlier runs: same model first, then any model with this method and device."""
    runs = _read_calibration(settings).get("runs", [])
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
                                             "flops_per_s": achieved, "ts": time.time()}])[-50:]
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

    def cost(self, price_per_hour: float | None) -> float | None:
        return None if not price_per_hour else self.seconds / 3600 * price_per_hour

    def to_dict(self) -> dict:
        return {"steps": self.steps, "tokens": self.tokens, "flops": self.flops, "flops_per_s": self.flops_per_s,
                "seconds": self.seconds, "source": self.source}


def estimate_time(settings: Settings, model: str, method: str, device: str, parameters: int, steps: int,
                  tokens_per_step: int, workers: int = 1, trained_parameters: int = 0) -> TimeEstimate:
    """`tokens_per_step` counts every worker's batch. With `workers` > 1 (Ray Train) the compute divides
    among them, and each step pays an all-reduce of the trained parameters' gradients (allreduce_seconds)."""
    tokens = steps * tokens_per_step
    flops = float(FLOPS_PER_PARAM_TOKEN) * parameters * tokens
    throughput, source = learned_throughput(settings, model, method, device)
    if throughput is None:
        peak = matmul_flops("cuda" if device == "cuda" else "cpu", settings)
        throughput = peak * DEFAULT_EFFICIENCY.get(method, 1.0)
        source = f"matmul benchmark {peak / 1e9:.0f} GFLOP/s x {DEFAULT_EFFICIENCY.get(method, 1.0)} (no run measured yet)"
    seconds = flops / (throughput * workers) + steps * STEP_OVERHEAD_S.get(device, 0.02)
    if workers > 1:
        seconds += steps * allreduce_seconds(trained_parameters, workers, device) + WORKER_GROUP_START_S
        source += f"; {workers} workers: each step's gradient all-reduce and the workers' start added"
    return TimeEstimate(steps, tokens, flops, throughput * workers, seconds, source)


# Data-parallel training across nodes (Ray Train): a ring all-reduce moves 2 (N-1)/N of the gradient
# bytes through each worker's link, plus a latency per step. 1 GB/s is 10 GbE less overheads (gloo on
# the CPU); NVLink or InfiniBand are faster, so this errs long. The start (the controller and worker actors,
# each importing torch and loading the model) is a guess for nodes with idle cores; on this oversubscribed
# 2-core machine bench/cluster.py measured about 70 s (docs/BENCHMARKS.md).
LINK_BYTES_PER_S = {"cpu": 1e9, "cuda": 10e9}
ALLREDUCE_LATENCY_S = 0.005
WORKER_GROUP_START_S = 15.0


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
