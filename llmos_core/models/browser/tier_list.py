"""Tiers: a short list of well-known models a machine of this class runs well, so a new user has a sensible
next model after the embedded ones. The candidates' shapes are the figures of their config.json files on
the hub (written here so the list works offline, without a hub call); every memory and speed figure is the
browser's own prediction on this machine's calibration (predict.py), never typed.

Machine classes: "cpu" (no GPU: the CPU and RAM do everything), "mid-gpu" (one GPU under BIG_GPU_BYTES),
"big-gpu" (one GPU of BIG_GPU_BYTES or more). This machine's GPU, when there is one, is read through
device.py (free memory) and its bandwidth measured once (a sum over a 1 GB tensor, cached with the CPU
calibration); llama.cpp then offloads the layers that fit (predict._offload).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from .calibration import Calibration
from .predict import Gpu, Prediction, predict, recommend
from .shape import LLAMACPP, Form, Shape, bytes_for

BIG_GPU_BYTES = 40 * 1024**3
CLASSES = ("cpu", "mid-gpu", "big-gpu")
# For showing another class than this machine's (`models tiers --class`): a representative GPU, labelled as
# such wherever it is shown. This machine's own class always uses its measured figures.
REFERENCE_GPUS = {"mid-gpu": Gpu(free_bytes=12 * 1024**3, bandwidth=450e9, flops=60e12),
                  "big-gpu": Gpu(free_bytes=76 * 1024**3, bandwidth=2000e9, flops=400e12)}
QUANTS = ("Q4_K_M", "Q8_0")   # the GGUF forms every candidate is published in (official or community repos)
TIER_SIZE = 5

# hub id -> (architecture, parameters, layers, hidden, heads, kv_heads, head_dim, vocab, tied, context), from
# each model's config.json (parameters: the safetensors total; Gemma 3 4B: its language model only).
CURATED: dict[str, tuple] = {
    "HuggingFaceTB/SmolLM2-360M-Instruct": ("llama", 362e6, 32, 960, 15, 5, 64, 49152, True, 8192),
    "Qwen/Qwen2.5-0.5B-Instruct": ("qwen2", 494e6, 24, 896, 14, 2, 64, 151936, True, 32768),
    "google/gemma-3-1b-it": ("gemma3_text", 1.0e9, 26, 1152, 4, 1, 256, 262144, True, 32768),
    "meta-llama/Llama-3.2-1B-Instruct": ("llama", 1.24e9, 16, 2048, 32, 8, 64, 128256, True, 131072),
    "Qwen/Qwen2.5-1.5B-Instruct": ("qwen2", 1.54e9, 28, 1536, 12, 2, 128, 151936, True, 32768),
    "HuggingFaceTB/SmolLM2-1.7B-Instruct": ("llama", 1.71e9, 24, 2048, 32, 32, 64, 49152, True, 8192),
    "Qwen/Qwen2.5-3B-Instruct": ("qwen2", 3.09e9, 36, 2048, 16, 2, 128, 151936, True, 32768),
    "meta-llama/Llama-3.2-3B-Instruct": ("llama", 3.21e9, 28, 3072, 24, 8, 128, 128256, True, 131072),
    "microsoft/Phi-3.5-mini-instruct": ("phi3", 3.82e9, 32, 3072, 32, 32, 96, 32064, False, 131072),
    "google/gemma-3-4b-it": ("gemma3", 3.88e9, 34, 2560, 8, 4, 256, 262208, True, 131072),
    "mistralai/Mistral-7B-Instruct-v0.3": ("mistral", 7.25e9, 32, 4096, 32, 8, 128, 32768, False, 32768),
    "Qwen/Qwen2.5-7B-Instruct": ("qwen2", 7.62e9, 28, 3584, 28, 4, 128, 152064, False, 32768),
    "meta-llama/Llama-3.1-8B-Instruct": ("llama", 8.03e9, 32, 4096, 32, 8, 128, 128256, False, 131072),
    "Qwen/Qwen2.5-14B-Instruct": ("qwen2", 14.7e9, 48, 5120, 40, 8, 128, 152064, False, 32768),
    "Qwen/Qwen2.5-32B-Instruct": ("qwen2", 32.8e9, 64, 5120, 40, 8, 128, 152064, False, 32768),
    "meta-llama/Llama-3.3-70B-Instruct": ("llama", 70.6e9, 80, 8192, 64, 8, 128, 128256, False, 131072),
}


@dataclass
class Tier:
    machine_class: str
    reference: bool              # True: a representative GPU, not this machine's
    gpu: Gpu | None
    models: list[Prediction]     # the recommended form of each candidate that runs well, smallest first
    too_slow_or_big: int         # candidates left out
    none_well: bool = False      # no candidate runs well: `models` are the smallest that fit, slowly

    def to_dict(self) -> dict:
        return {"machine_class": self.machine_class, "reference": self.reference,
                "gpu_free_bytes": self.gpu.free_bytes if self.gpu else 0,
                "models": [p.to_dict() for p in self.models], "left_out": self.too_slow_or_big,
                "none_runs_well": self.none_well}


def curated_shape(repo: str) -> Shape:
    arch, params, layers, hidden, heads, kv, head_dim, vocab, tied, context = CURATED[repo]
    return Shape(arch, int(params), layers, hidden, heads, kv, head_dim, vocab, context, tied)


def machine_class(gpu: Gpu | None) -> str:
    if gpu is None:
        return "cpu"
    return "big-gpu" if gpu.free_bytes >= BIG_GPU_BYTES else "mid-gpu"


def tiers(calibration: Calibration, budget_bytes: int, gpu: Gpu | None, *, context: int = 4096,
          wanted: str = "", prefix_cache_mb: float = 0) -> Tier:
    """The candidates whose recommended form runs well here (or on `wanted`'s reference GPU), the largest
    TIER_SIZE of them, smallest first. A candidate's GGUF forms are predicted from its parameter count."""
    own = machine_class(gpu)
    cls = wanted or own
    if cls not in CLASSES:
        from ...errors import InvalidInput

        raise InvalidInput(f"unknown machine class {cls!r}", f"use one of: {', '.join(CLASSES)}")
    reference = cls != own
    if reference:
        gpu = REFERENCE_GPUS.get(cls)
    chosen, fitting = [], []
    for repo in CURATED:
        shape = curated_shape(repo)
        forms = [Form(LLAMACPP, q, bytes_for(shape.parameters, q), bytes_for(shape.parameters, q), "") for q in QUANTS]
        # the budget is RAM; with a GPU, what is offloaded does not count against it (predict.badge)
        predictions = [predict(repo, shape, f, calibration, context=context, budget_bytes=budget_bytes, gpu=gpu,
                               prefix_cache_mb=prefix_cache_mb) for f in forms]
        best = recommend(predictions)
        if best is not None and best.badge == "runs well":
            chosen.append(best)
        elif best is not None:
            fitting.append(best)
    if not chosen:   # a slow or loaded machine: the smallest that fit, said to be slow (their badge)
        kept = sorted(fitting, key=lambda p: p.weights_bytes)[:TIER_SIZE]
        return Tier(cls, reference, gpu, kept, len(CURATED) - len(kept), none_well=True)
    kept = sorted(chosen, key=lambda p: p.weights_bytes)[-TIER_SIZE:]
    return Tier(cls, reference, gpu, kept, len(CURATED) - len(kept))


def this_gpu(settings) -> Gpu | None:
    """The GPU the settings choose (free memory now, bandwidth measured once and cached), or None."""
    from ...device import choose_device, free_memory

    device = choose_device(settings.device, settings.dtype)
    if device.kind != "cuda":
        return None
    from ...training.estimate import matmul_flops

    free, _ = free_memory(device)
    return Gpu(free_bytes=free, bandwidth=_gpu_bandwidth(settings, device),
               flops=matmul_flops(device.torch_device, settings))


def _gpu_bandwidth(settings, device) -> float:
    path = settings.home / "models" / "gpu_bandwidth.json"
    try:
        return float(json.loads(path.read_text())[device.name])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    import torch

    from ...training.estimate import best_rate

    data = torch.ones(256 * 1024**2, dtype=torch.float32, device=device.torch_device)   # 1 GB
    rate = best_rate(data.sum, data.numel() * 4, device.torch_device)
    del data
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({device.name: rate}))
    return rate
