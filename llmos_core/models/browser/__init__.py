"""The model browser: before a download, what a model will take and how fast it will answer here, in each of
its forms. `estimate` for a catalog name or a hub id; `search` for the hub (hub.py); the figures come from
predict.py on this machine's calibration (calibration.py), corrected by the replies measured here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import psutil

from ...errors import InvalidInput, ModelNotFound
from ..catalog import HUB_ID
from . import calibration as calibration_module
from . import hub
from .tier_list import Tier, this_gpu, tiers
from .calibration import Calibration
from .predict import TTFT_PROMPT_TOKENS, Gpu, Prediction, decode_seconds, predict, recommend, ttft_seconds
from .shape import LLAMACPP, TRANSFORMERS_INT8, Form, Shape, bytes_for, int8_form, local_forms, local_shape

__all__ = ["Estimate", "Tier", "estimate", "estimate_forms", "learned_calibration", "hub", "memory_budget", "this_gpu",
           "tiers"]


@dataclass
class Estimate:
    model: str
    source: str                     # catalog | hub
    shape: Shape
    predictions: list[Prediction]   # one per form
    recommended: Prediction | None
    calibration: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        best = self.recommended or (self.predictions[0] if self.predictions else None)
        head = {k: getattr(best, k) for k in ("memory_bytes", "decode_tokens_per_s", "prompt_tokens_per_s",
                                              "ttft_s", "download_s", "badge", "runner", "quant")} if best else {}
        return {"model": self.model, "source": self.source, **head,
                "recommended": self.recommended.quant if self.recommended else None,
                "shape": self.shape.to_dict(), "forms": [p.to_dict() for p in self.predictions],
                "calibration": self.calibration}


def load_context(runner: str) -> int:
    """The KV cells a runner allocates when it loads a model (llama.cpp: fixed at load; transformers: none,
    its cache grows with each reply): the context at which a prediction matches the manager's measurement."""
    from ..llamacpp import N_CTX, SHARED_CONTEXTS

    return N_CTX * SHARED_CONTEXTS if runner == LLAMACPP else 0


def memory_budget(settings) -> int:
    """RAM a model may take: the configured budget, else what is available now."""
    available = psutil.virtual_memory().available
    return min(int(settings.memory_budget), available) if settings.memory_budget else available


def learned_calibration(settings, store=None, catalog=None, refresh: bool = False) -> Calibration:
    """This machine's figures, corrected by the chat replies measured here (per runner and quantization)."""
    calibration = calibration_module.machine(settings, refresh=refresh)
    if store is None or catalog is None:
        return calibration
    pairs, shapes = [], {}
    for reply in calibration_module.measured_replies(store):
        runner = reply["backend"]
        if runner not in (LLAMACPP, "transformers", TRANSFORMERS_INT8):
            continue
        try:
            if reply["model"] not in shapes:
                spec = catalog.get(reply["model"])
                shape = local_shape(spec, settings)
                known = local_forms(spec, settings, shape) + [int8_form(shape)]   # replies on transformers-int8 too
                shapes[reply["model"]] = (shape, {f.runner: f for f in known})
            shape, forms = shapes[reply["model"]]
        except Exception:   # a model removed since, or not estimable: nothing to learn from it
            continue
        form = forms.get(runner)
        if form is None:
            continue
        position = int(reply.get("prompt_tokens") or TTFT_PROMPT_TOKENS)
        if reply.get("tokens_per_s"):
            raw = 1 / decode_seconds(shape, form, calibration, position)
            pairs.append(("decode", runner, form.quant, reply["tokens_per_s"] / raw))
        if reply.get("ttft_s") and reply.get("prompt_tokens"):
            # the raw TTFT for this reply's prompt length
            expected = ttft_seconds(shape, form, calibration, reply["prompt_tokens"])
            pairs.append(("ttft", runner, form.quant, reply["ttft_s"] / expected))
    return calibration_module.learn(calibration, pairs)


def estimate_forms(name: str, shape: Shape, forms: list[Form], calibration: Calibration, *, context: int,
                   quant: str = "", budget_bytes: int = 0, gpu: Gpu | None = None, download_rate=None,
                   source: str = "catalog", prefix_cache_mb: float = 0) -> Estimate:
    if quant:
        forms = _with_quant(forms, shape, quant, download=source == "hub")
    predictions = [predict(name, shape, form, calibration, context=context, budget_bytes=budget_bytes, gpu=gpu,
                           download_rate=download_rate, prefix_cache_mb=prefix_cache_mb) for form in forms]
    return Estimate(name, source, shape, predictions, recommend(predictions),
                    {"bandwidth_bytes_per_s": calibration.bandwidth, "flops_per_s": calibration.flops,
                     "learned_from_replies": calibration.samples,
                     "decode_correction": calibration.decode_correction,
                     "ttft_correction": calibration.ttft_correction})


def estimate(ref: str, settings, catalog, store=None, *, context: int = 4096, quant: str = "",
             gpu: Gpu | None = None) -> Estimate:
    """A catalog name (embedded, local GGUF or folder: offline) or a hub id (through the hub's metadata)."""
    if not 0 <= context <= 1_048_576:
        raise InvalidInput(f"context {context} is out of range", "give 0 to 1048576 tokens")
    calibration = learned_calibration(settings, store, catalog)
    gpu = gpu if gpu is not None else this_gpu(settings)
    budget = memory_budget(settings)
    rate = calibration_module.download_rate(settings)
    try:
        spec = catalog.get(ref)
    except ModelNotFound:
        spec = None
    if spec is not None and (spec.source != "hub" or _on_disk(spec, settings)):
        shape = local_shape(spec, settings)
        return estimate_forms(spec.name, shape, local_forms(spec, settings, shape), calibration, context=context,
                              quant=quant, budget_bytes=budget, gpu=gpu, prefix_cache_mb=prefix_cache_mb(settings))
    repo = spec.location if spec is not None else ref
    if not HUB_ID.match(repo):
        raise ModelNotFound(f"{ref!r} is not in the catalog and is not a hub id (owner/name)",
                            "python -m llmos_core models list shows the catalog")
    model = hub.info(repo, settings)
    if model.shape is None:
        raise InvalidInput(f"{repo}: the hub gives no parameter count or config.json for it",
                           "its size cannot be predicted before a download")
    forms = model.forms()
    if not forms and not quant:
        raise InvalidInput(f"{repo}: LLM OS cannot run it here ({'; '.join(v for v in model.runners.values() if v)})")
    return estimate_forms(repo, model.shape, forms, calibration, context=context, quant=quant, budget_bytes=budget,
                          gpu=gpu, download_rate=rate, source="hub", prefix_cache_mb=prefix_cache_mb(settings))


def prefix_cache_mb(settings) -> float:
    """The prefix cache's size a llama.cpp load allocates (0 when it is off)."""
    return settings.prefix_cache_mb if settings.prefix_cache else 0


def _on_disk(spec, settings) -> bool:
    from .. import fetch

    return fetch.is_ready(spec, settings)


def _with_quant(forms: list[Form], shape: Shape, quant: str, download: bool) -> list[Form]:
    """The forms of that quantization; one on offer nowhere is predicted from its bytes per weight."""
    wanted = [f for f in forms if f.quant.upper() == quant.upper()]
    if wanted:
        return wanted
    runner = "transformers" if quant.lower() in ("fp32", "bf16", "fp16", "int8") else LLAMACPP
    weights = bytes_for(shape.parameters, quant)
    return [Form(runner, quant.upper() if runner == LLAMACPP else quant.lower(), weights,
                 weights if download else 0, "")]
