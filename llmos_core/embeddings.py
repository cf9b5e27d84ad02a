"""Sentence embeddings: texts -> vectors, from a sentence-embedding model held by the memory manager.

The model is loaded, counted, pinned while in use and evicted by the same rules as every other
(ModelManager.use). Pooling follows the model's sentence-transformers files when it has them
(1_Pooling/config.json: mean or CLS; modules.json: a Normalize step), else mean pooling and unit
length, as all-MiniLM-L6-v2 does. Texts are sorted by length before batching, so a batch pads little.
The forward passes run on the process's compute thread (models/compute_thread.py: one OpenMP pool).
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import InvalidInput
from .models import compute_thread
from .models.catalog import EMBEDDING

if TYPE_CHECKING:
    from .models.manager import ModelManager, ResidentModel

BATCH_SIZE = 64


@dataclass
class Embeddings:
    vectors: list[list[float]]
    tokens: int           # input tokens, special tokens included (the API's usage)


@dataclass
class Pooling:
    cls_token: bool       # CLS pooling; otherwise the mean over real (unpadded) tokens
    normalize: bool


def read_pooling(folder: Path) -> Pooling:
    """The pooling a sentence-transformers folder declares; mean and normalized when it declares none."""
    try:
        modules = json.loads((folder / "modules.json").read_text())
    except (OSError, ValueError):
        return Pooling(cls_token=False, normalize=True)
    normalize = any("Normalize" in str(m.get("type", "")) for m in modules)
    cls_token = False
    for module in modules:
        if "Pooling" in str(module.get("type", "")):
            try:
                config = json.loads((folder / module.get("path", "") / "config.json").read_text())
                cls_token = bool(config.get("pooling_mode_cls_token"))
            except (OSError, ValueError):
                pass
    return Pooling(cls_token, normalize)


def max_input_tokens(resident: "ResidentModel") -> int:
    """What the model reads at most: its positions, and the tokenizer's limit when that is sensible."""
    limit = getattr(resident.model.config, "max_position_embeddings", None) or 512
    tokenizer_limit = getattr(resident.tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < 1_000_000:
        limit = min(limit, tokenizer_limit)
    return limit


def encode(resident: "ResidentModel", texts: list[str], batch_size: int = BATCH_SIZE) -> Embeddings:
    import torch

    tokenizer, model = resident.tokenizer, resident.model
    ids = tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
    limit = max_input_tokens(resident)
    for i, row in enumerate(ids):
        if not texts[i].strip() or not row:
            raise InvalidInput(f"input {i} is empty", "send text to embed in every input")
        if len(row) > limit:
            raise InvalidInput(f"input {i} is too long: {len(row)} tokens, {resident.name} reads at most {limit} "
                               f"({len(row) - limit} too many)", "split the text into shorter pieces")
    pooling = read_pooling(Path(resident.loaded.details.get("folder", "")))
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    vectors: list = [None] * len(ids)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chosen = order[start:start + batch_size]
            batch = tokenizer.pad({"input_ids": [ids[i] for i in chosen]}, return_tensors="pt")
            batch = {k: v.to(model.device) for k, v in batch.items()}
            hidden = model(**batch).last_hidden_state            # (B, T, H)
            if pooling.cls_token:
                pooled = hidden[:, 0]
            else:
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)   # (B, T, 1)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            if pooling.normalize:
                pooled = torch.nn.functional.normalize(pooled.float(), dim=-1)
            for i, row in zip(chosen, pooled.float().cpu().tolist()):
                vectors[i] = row
    return Embeddings(vectors, sum(len(row) for row in ids))


class EmbeddingService:
    """Shared by every caller; one batch at a time per model (a CPU forward already uses every core)."""

    def __init__(self, models: "ModelManager", batch_size: int = BATCH_SIZE):
        self.models, self.batch_size = models, batch_size
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def embed(self, name: str, texts: list[str]) -> Embeddings:
        spec = self.models.catalog.get(name)
        if spec.task != EMBEDDING:
            raise InvalidInput(f"{name} is a {spec.task} model, not a sentence-embedding model",
                               "pick a model whose task is sentence-embedding (e.g. all-minilm-l6-v2)")
        if not texts or not all(isinstance(t, str) for t in texts):
            raise InvalidInput("embeddings need a list of strings", "send input as a string or a list of strings")
        with self._lock:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock, self.models.use(name, "transformers") as resident:
            return compute_thread.run(encode, resident, texts, self.batch_size)
