"""Int8 weight-only quantization for transformers on the CPU: fewer bytes read per decoded token.

Every nn.Linear (the tied output head included) keeps its weight as int8 with one fp32 scale per output
row, and multiplies through `torch.ops.aten._weight_int8pack_mm`, torch's own CPU kernel for exactly this.
That kernel is fast with bf16 activations only (fp32 ones take a slow path), so each quantized layer
casts its input to bf16 and its output back to fp32; norms, attention and residuals stay fp32.
The kernel computes each row of the batch on its own, so batching does not change a request's output.
A tied embedding shares the int8 matrix with the head: gathered rows are de-quantized on the fly.
"""
from __future__ import annotations

import threading

import torch
from torch import nn

from ..device import release_memory
from . import fetch
from .backends import Loaded, TransformersBackend, tensor_bytes, with_overhead
from .catalog import ModelSpec


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8: (int8 weight, fp32 scale per row)."""
    scale = weight.detach().abs().amax(dim=1).clamp(min=1e-8) / 127.0
    q = torch.round(weight.detach() / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q.contiguous(), scale.float()


class Int8Linear(nn.Module):
    def __init__(self, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.out_features, self.in_features = q.shape
        self.register_buffer("weight_int8", q)
        self.register_buffer("scale", scale)                 # fp32, for de-quantizing rows
        self.register_buffer("scale_bf16", scale.to(torch.bfloat16))
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = torch.ops.aten._weight_int8pack_mm(x.reshape(-1, self.in_features).to(torch.bfloat16),
                                               self.weight_int8, self.scale_bf16)
        y = y.to(x.dtype).reshape(*shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias


class Int8Embedding(nn.Module):
    """Embedding rows read from an int8 matrix (shared with the output head when they were tied)."""

    def __init__(self, head: Int8Linear, original: nn.Embedding):
        super().__init__()
        self.head = [head]   # a list, so the head is not registered twice as a child module
        self.num_embeddings, self.embedding_dim = head.out_features, head.in_features
        self.padding_idx = original.padding_idx
        scale = getattr(original, "embed_scale", None)   # Gemma multiplies embeddings by sqrt(hidden)
        self.register_buffer("embed_scale", None if scale is None else torch.as_tensor(scale).float().clone())

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        head = self.head[0]
        rows = head.weight_int8[ids].float() * head.scale[ids][..., None]
        return rows if self.embed_scale is None else rows * self.embed_scale


def quantize_model(model: nn.Module) -> nn.Module:
    """Replace every nn.Linear with Int8Linear in place; re-tie a tied input embedding to the int8 head."""
    embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    tied = embedding is not None and head is not None and head.weight is embedding.weight
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                q, scale = quantize_rows(child.weight.float())
                setattr(parent, child_name, Int8Linear(q, scale, child.bias))
    if tied:
        new_head = model.get_output_embeddings()
        model.set_input_embeddings(Int8Embedding(new_head, embedding))
    model.llmos_int8 = True
    return model



def int8_supported() -> bool:
    """torch's int8 weight-only kernel exists (torch >= 2.4 CPU builds)."""
    import torch

    return hasattr(torch.ops.aten, "_weight_int8pack_mm")


class Int8TransformersBackend(TransformersBackend):
    """transformers with int8 weights on the CPU: 4x fewer bytes than fp32, perplexity within 1% on the
    embedded models (tests/unit/test_int8.py checks 2%), and a request's greedy text is the same alone or
    batched. Loads fp32 first (a transient peak of the fp32 size), then quantizes in place."""

    name = "transformers-int8"

    def estimate(self, spec: ModelSpec) -> int:
        n_params = self._parameter_count(spec)
        return 0 if n_params is None else with_overhead(n_params)   # one byte a weight

    def load(self, spec: ModelSpec, progress: fetch.Progress, cancel: threading.Event | None = None) -> Loaded:
        loaded = super().load(spec, progress, cancel)
        progress(0.95, f"quantizing {spec.name} to int8")
        quantize_model(loaded.model)
        release_memory(self.device)   # the fp32 weights just dropped: hand them back to the OS
        return Loaded(loaded.model, loaded.tokenizer, tensor_bytes(loaded.model),
                      {**loaded.details, "dtype": "int8", "form": "int8 weights (per row), bf16 matmuls"})
