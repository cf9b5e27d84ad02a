"""Backends turn a catalog entry into a model in memory. The manager decides when; a backend knows how.

A backend estimates the bytes a model will take before loading (from file headers, no weights read),
loads it, and measures what it took. `transformers` is the one every model supports; the llama.cpp
backend (GGUF on the CPU) registers itself in the same way.
"""
from __future__ import annotations

import json
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..device import DeviceChoice, dtype_size
from ..errors import InsufficientMemory, LLMOSError, ModelLoadError
from ..settings import Settings
from . import fetch
from .catalog import EMBEDDING, SEQ2SEQ, ModelSpec

# Activations, KV cache for a short context, allocator slack: measured on the embedded models at
# 5-12% of the weights; 10% plus a fixed 30 MB keeps estimates within a few percent.
RUNTIME_OVERHEAD = 0.10
RUNTIME_FIXED = 30 * 1024**2


@dataclass
class Loaded:
    model: Any
    tokenizer: Any
    measured_bytes: int
    details: dict


class Backend(Protocol):
    name: str

    def estimate(self, spec: ModelSpec) -> int: ...
    def load(self, spec: ModelSpec, progress: fetch.Progress, cancel: threading.Event | None) -> Loaded: ...
    def unload(self, loaded: Loaded) -> None: ...


def safetensors_parameter_bytes(folder: Path) -> tuple[int, int]:
    """(parameters, bytes as stored) from the safetensors headers, reading no weights."""
    sizes = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
    n_params = n_bytes = 0
    for file in sorted(folder.glob("*.safetensors")):
        with open(file, "rb") as handle:
            (header_len,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(header_len))
        for key, entry in header.items():
            if key == "__metadata__":
                continue
            count = 1
            for dim in entry["shape"]:
                count *= dim
            n_params += count
            n_bytes += count * sizes.get(entry["dtype"], 4)
    return n_params, n_bytes


def tensor_bytes(model: Any) -> int:
    """Bytes held by a torch module's parameters and buffers, tied weights counted once."""
    seen, total = set(), 0
    for tensor in list(model.parameters()) + list(model.buffers()):
        key = (tensor.device.type, tensor.untyped_storage().data_ptr())
        if key not in seen:
            seen.add(key)
            total += tensor.untyped_storage().nbytes()
    return total


def job_model_estimate(settings: Settings, name: str, device: DeviceChoice | None = None) -> tuple[int, str]:
    """(bytes, "cpu" | "cuda") of catalog model `name` held by transformers in a job's worker: what a job
    kind's estimate() declares to admission. `device`: the settings' choice unless given."""
    from ..device import choose_device
    from ..store import Store
    from .catalog import Catalog

    device = device or choose_device(settings.device, settings.dtype)
    store = Store(settings.db_path)
    try:
        catalog = Catalog(store)
        memory = TransformersBackend(settings, device, catalog).estimate(catalog.get(name))
    finally:
        store.close()
    return memory, "cuda" if device.kind == "cuda" else "cpu"


def with_overhead(weight_bytes: int) -> int:
    return int(weight_bytes * (1 + RUNTIME_OVERHEAD)) + RUNTIME_FIXED


class TransformersBackend:
    name = "transformers"

    def __init__(self, settings: Settings, device: DeviceChoice, catalog=None):
        self.settings, self.device, self.catalog = settings, device, catalog

    def estimate(self, spec: ModelSpec) -> int:
        """Parameters x dtype size + overhead, from the converted folder or the GGUF header."""
        n_params = self._parameter_count(spec)
        if n_params is None:
            return 0   # unknown until downloaded; the manager re-checks after fetching
        return with_overhead(n_params * dtype_size(self.device.dtype))

    def _parameter_count(self, spec: ModelSpec) -> int | None:
        if spec.data.get("adapter") and self.catalog is not None:
            # Merged at load: the adapter's own few parameters vanish into the base weights.
            return self._parameter_count(self.catalog.get(spec.data["base_model"]))
        if spec.source in ("embedded", "gguf"):
            folder = fetch.converted_folder(spec, self.settings)
            if (folder / fetch.COMPLETE_MARK).exists():
                return safetensors_parameter_bytes(folder)[0]
            return fetch.read_gguf_summary(fetch.gguf_path(spec, self.settings))["parameters"]
        if spec.source == "hub" and not fetch.is_ready(spec, self.settings):
            return None
        folder = fetch.model_folder(spec, self.settings) if spec.source == "hub" else Path(spec.location)
        n_params = safetensors_parameter_bytes(folder)[0]
        if n_params == 0:   # .bin weights: bytes on disk / 4 is close enough for fp32 checkpoints
            n_params = sum(p.stat().st_size for p in folder.glob("*.bin")) // 4
        return n_params

    def load(self, spec: ModelSpec, progress: fetch.Progress, cancel: threading.Event | None = None) -> Loaded:
        import torch

        if spec.data.get("adapter"):
            return self._load_adapter(spec, progress, cancel)
        folder = fetch.model_folder(spec, self.settings, progress, cancel)
        fetch.check_folder(folder)
        progress(0.9, f"loading {spec.name} on {self.device.name}")
        try:
            from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

            auto = {SEQ2SEQ: AutoModelForSeq2SeqLM, EMBEDDING: AutoModel}.get(spec.task, AutoModelForCausalLM)
            has_safetensors = any(folder.glob("*.safetensors"))
            tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=spec.trust_remote_code)
            model = auto.from_pretrained(str(folder), dtype=getattr(torch, self.device.dtype),
                                         trust_remote_code=spec.trust_remote_code,
                                         use_safetensors=True if has_safetensors else None)
            model.to(self.device.torch_device)
            model.eval()
        except LLMOSError:
            raise
        except torch.OutOfMemoryError as exc:
            raise InsufficientMemory(spec.name, 0, 0, 0, "the device ran out of memory while loading") from exc
        except Exception as exc:
            raise ModelLoadError(f"could not load {spec.name}: {type(exc).__name__}: {exc}") from exc
        if self.settings.threads:
            torch.set_num_threads(self.settings.threads)
        return Loaded(model, tokenizer, tensor_bytes(model), {"folder": str(folder), "dtype": self.device.dtype,
                                                              "device": self.device.torch_device})

    def _load_adapter(self, spec: ModelSpec, progress: fetch.Progress, cancel) -> Loaded:
        """A LoRA adapter over a base model from the catalog, merged so it runs at base-model speed."""
        from peft import PeftModel

        if self.catalog is None:
            raise ModelLoadError(f"{spec.name} is an adapter, but no catalog was given to find its base model")
        base = self.load(self.catalog.get(spec.data["base_model"]), progress, cancel)
        try:
            merged = PeftModel.from_pretrained(base.model, spec.location).merge_and_unload()
        except Exception as exc:
            raise ModelLoadError(f"could not apply the adapter {spec.location}: {exc}") from exc
        merged.eval()
        return Loaded(merged, base.tokenizer, tensor_bytes(merged), {**base.details, "adapter": spec.location})

    def unload(self, loaded: Loaded) -> None:
        loaded.model = None
        loaded.tokenizer = None
