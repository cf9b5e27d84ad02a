"""A fine-tuned model of the catalog -> a GGUF llama.cpp serves, registered with the model so that `auto`
serves the fine-tune on llama.cpp. The last step of a training job (LLMOS_EXPORT_GGUF=0 turns it off),
and `models export NAME` / the Models page for models trained earlier.

The tokenizer and metadata come from the GGUF at the root of the model's lineage (fine-tune of a
fine-tune of the embedded Gemma -> the embedded Gemma's file); see models/export_gguf.py.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from ..errors import InvalidInput
from ..models import fetch
from ..models.catalog import Catalog, ModelSpec
from ..models.export_gguf import DEFAULT_QUANT, ExportError, Progress, export_gguf
from ..settings import Settings
from .model import adapter_chain, base_folder


def lineage_root(spec: ModelSpec, catalog: Catalog) -> ModelSpec:
    """The model the weights came from, following base_model links back; refused unless it is a GGUF."""
    root = spec
    while root.source == "trained":
        root = catalog.get(root.data["base_model"])
    if root.source not in ("embedded", "gguf"):
        raise ExportError(f"{spec.name} descends from {root.name}, which did not come from a GGUF file: "
                          "its tokenizer cannot be copied into one",
                          "train from a GGUF model (the embedded ones, or `models pull FILE.gguf`)")
    return root


def lineage_gguf(spec: ModelSpec, catalog: Catalog, settings: Settings) -> Path:
    """The GGUF file the model's weights came from (see lineage_root)."""
    return fetch.gguf_path(lineage_root(spec, catalog), settings)


def load_merged(spec: ModelSpec, catalog: Catalog, settings: Settings):
    """The trained model as transformers holds it, in fp32, every LoRA adapter of its lineage merged."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base_folder(spec, settings, catalog)), dtype=torch.float32)
    for adapter in adapter_chain(spec, catalog):
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    return model.eval()


def gguf_target(spec: ModelSpec, quant: str) -> Path:
    """Beside the trained weights, so removing the model's folder removes its GGUF too."""
    return Path(spec.location) / f"{spec.name}.{quant.upper()}.gguf"


def export_model(name: str, catalog: Catalog, settings: Settings, quant: str = DEFAULT_QUANT,
                 progress: Progress | None = None, cancelled: Callable[[], bool] | None = None) -> dict:
    """Write the GGUF and register it; returns the figures (file, bytes, seconds) for the job or the page."""
    progress = progress or (lambda fraction, message: None)
    spec = catalog.get(name)
    if spec.source != "trained":
        raise InvalidInput(f"{name} is not a fine-tuned model", "GGUF export is for models trained here; "
                           "a pulled or embedded GGUF model runs on llama.cpp as it is")
    started = time.time()
    source = lineage_gguf(spec, catalog, settings)
    progress(0.02, f"loading {name} with its adapters merged")
    model = load_merged(spec, catalog, settings)
    path = export_gguf(model, source, gguf_target(spec, quant), quant, settings.threads,
                       lambda f, m: progress(0.1 + 0.9 * f, m), cancelled)
    del model
    catalog.update_data(name, gguf=str(path), gguf_quant=quant, gguf_source=str(source))
    return {"gguf": str(path), "quant": quant, "bytes": path.stat().st_size, "seconds": time.time() - started,
            "source": str(source)}


def describe_export(export: dict | None) -> str | None:
    """One sentence on a job's export step, for the Train page and `train` in the CLI; None when it was off."""
    if not export:
        return None
    if export.get("cancelled"):
        return "GGUF export cancelled: the model runs on transformers; Resume the job or export it on the Models page."
    if export.get("error"):
        return f"no GGUF export: {export['error']} ({export.get('hint') or 'the model runs on transformers'})"
    return (f"exported to a {export['quant'].upper()} GGUF ({export['bytes'] / 1e6:.0f} MB, {export['seconds']:.0f} s): "
            "chat with backend auto serves it on llama.cpp")
