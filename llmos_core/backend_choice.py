"""Which backend serves a chat request: `auto`, `transformers`, `transformers-int8` or `llamacpp`, and why.

auto, in order:
  - a GPU (CUDA/MPS): transformers, which runs there in bf16/fp16 and batches;
  - a model that is not a GGUF file (hub id, folder, trained adapter): transformers, as it is;
  - llama.cpp not importable: transformers (int8 for a GGUF model on the CPU, see below);
  - a GGUF model on the CPU: llama.cpp, whose 4-bit weights are read as stored (fewer bytes per token
    than fp32, about 7x faster here), for one user and for many: up to llamacpp_batch.PARALLEL chats
    decode together in one batch (measured on this 2-core CPU, docs/BENCHMARKS.md: 8 together make
    about 2.4x the tokens/s of one; transformers' continuous batching of the same 8, int8, made 30
    tokens/s against llama.cpp's 180), and the rest wait in line.
Int8 only for GGUF models: their weights were 4-bit already, so int8 rows of the de-quantized weights lose
nothing measurable (perplexity within 1% here); other models' weights stay as their authors shipped them.
The reason is a sentence for the UI and the CLI; it quotes the speeds measured in this process when
both backends have served this model, so "2.6x faster here" is a figure, not a promise.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

from .errors import InvalidInput
from .models.catalog import ModelSpec
from .models.llamacpp_batch import PARALLEL

BACKENDS = ("auto", "transformers", "transformers-int8", "llamacpp")


@dataclass(frozen=True)
class BackendChoice:
    backend: str
    reason: str
    requested: str = "auto"


class SpeedBook:
    """Single-stream decoding speed per (model, backend), measured on finished replies (moving average)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._speeds: dict[tuple[str, str], float] = {}

    def record(self, name: str, backend: str, tokens_per_s: float | None, concurrent: int = 1) -> None:
        if not tokens_per_s or concurrent > 1:   # only a reply that ran alone says what one user gets
            return
        with self._lock:
            old = self._speeds.get((name, backend))
            self._speeds[(name, backend)] = tokens_per_s if old is None else 0.7 * old + 0.3 * tokens_per_s

    def speed(self, name: str, backend: str) -> float | None:
        with self._lock:
            return self._speeds.get((name, backend))


def batching_backend(backends) -> str:
    return "transformers-int8" if "transformers-int8" in backends else "transformers"


def choose_backend(spec: ModelSpec, requested: str, *, device_kind: str, backends, llamacpp_reason: str = "",
                   in_flight: dict[str, int] | None = None, speeds: SpeedBook | None = None) -> BackendChoice:
    """The backend for one new request. `in_flight`: running + waiting requests of this model per backend."""
    requested = (requested or "auto").strip().lower()
    if requested not in BACKENDS:
        raise InvalidInput(f"unknown backend {requested!r}", f"use one of: {', '.join(BACKENDS)}")
    is_gguf = spec.has_gguf
    if requested != "auto":
        if requested not in backends:
            why = llamacpp_reason if requested == "llamacpp" else "it runs on the CPU only"
            raise InvalidInput(f"the {requested} backend is not available here: {why}",
                               "choose auto or transformers")
        if requested == "llamacpp" and not is_gguf:
            raise InvalidInput(f"{spec.name} is not a GGUF model; llama.cpp runs GGUF files only",
                               "choose auto or transformers")
        return BackendChoice(requested, f"{requested}: chosen in the request", requested)
    # int8 of de-quantized 4-bit weights loses nothing; a fine-tune's own fp32 weights stay as trained.
    batch = batching_backend(backends) if spec.source != "trained" else "transformers"
    if device_kind != "cpu":
        return BackendChoice("transformers", f"transformers: the model runs on the {device_kind.upper()} GPU")
    if not is_gguf:
        why = " (export it to GGUF to serve it on llama.cpp)" if spec.source == "trained" else ""
        return BackendChoice("transformers", f"transformers: {spec.name} is not a GGUF file (llama.cpp runs GGUF only)"
                                             + why)
    if "llamacpp" not in backends:
        return BackendChoice(batch, f"{batch}: llama.cpp is not available ({llamacpp_reason or 'not installed'})")
    on_llamacpp = (in_flight or {}).get("llamacpp", 0)
    if on_llamacpp:
        return BackendChoice("llamacpp", f"llama.cpp: joins the {on_llamacpp} chat(s) on this model, decoded "
                                         f"together (up to {PARALLEL} at once, the rest wait in line)")
    measured = _speedup(spec.name, speeds, batch)
    if spec.source == "trained":
        form = spec.data.get("gguf_quant", "quantized").upper()
        return BackendChoice("llamacpp", f"llama.cpp: serves the {form} GGUF exported from this fine-tune, "
                                         + (measured or f"{form} weights read as stored, fewer bytes per token "
                                                        "than its fp32 weights on transformers: faster on a CPU"))
    return BackendChoice("llamacpp", "llama.cpp: " + (measured or "4-bit GGUF weights read as stored, fewer bytes "
                                                      "per token than fp32: faster for one user on a CPU"))


def _speedup(name: str, speeds: SpeedBook | None, other: str) -> str | None:
    fast = speeds.speed(name, "llamacpp") if speeds else None
    slow = None
    if speeds:
        slow = speeds.speed(name, "transformers") or speeds.speed(name, other)
    if fast and slow:
        return f"{fast / slow:.1f}x faster here for one user ({fast:.0f} vs {slow:.0f} tokens/s measured)"
    return None
