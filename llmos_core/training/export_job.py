"""The `export` job kind: a fine-tuned model written as a GGUF for llama.cpp, in a worker process.

The Models page queues this for models trained earlier (a training job exports its own result as its
last step). As a job it goes through admission like the others: the merged fp32 weights and the
quantized tensors are counted before it starts, where an export in the server process would take a gigabyte
beside the loaded models without the memory manager knowing. Cancel stops it between tensors.
params: model (a catalog name of a fine-tuned model), quant ("q8_0" | "q4").
"""
from __future__ import annotations

from ..errors import InvalidInput, LoadCancelled
from ..models.export_gguf import DEFAULT_QUANT
from ..settings import Settings

QUANTS = ("q8_0", "q4")
PATH_PARAMS: tuple[str, ...] = ()   # no file parameters: the model is named, and found in the catalog
# What an export holds at its peak: the merged fp32 weights, the f16 tensors the GGUF writer keeps until it
# writes, llama.cpp's quantization reading that file and writing the Q8_0 one (together about the fp32
# weights again), and the worker (Python, torch, transformers: 234 MB measured). Peak RSS measured on the
# embedded models' weights against this: SmolLM2 1,414 MB (estimate 1.06x), Gemma 3 270M 2,794 MB (0.96x).
_WORKER_BYTES = 250 * 1024**2


def _catalog(settings: Settings):
    from ..models.catalog import Catalog
    from ..store import Store

    store = Store(settings.db_path)
    return store, Catalog(store)


def validate(params: dict, settings: Settings) -> dict:
    unknown = set(params) - {"model", "quant"}
    if unknown:
        raise InvalidInput(f"export does not take {', '.join(sorted(unknown))}", "its parameters: model, quant")
    name = str(params.get("model") or "").strip()
    quant = str(params.get("quant") or DEFAULT_QUANT)
    if quant not in QUANTS:
        raise InvalidInput(f"unknown GGUF form {quant!r}", f"choose one of {', '.join(QUANTS)}")
    from .export import lineage_root

    store, catalog = _catalog(settings)
    try:
        spec = catalog.get(name)   # raises with the catalog's own hint for an unknown name
        if spec.source != "trained":
            raise InvalidInput(f"{name} is not a fine-tuned model", "GGUF export is for models trained here; "
                               "a pulled or embedded GGUF model runs on llama.cpp as it is")
        lineage_root(spec, catalog)   # refused now, with its reason, rather than when the job runs
    finally:
        store.close()
    return {"model": name, "quant": quant}


def estimate(params: dict, settings: Settings) -> dict:
    from ..device import choose_device
    from ..models.backends import job_model_estimate

    # Always on the CPU in fp32: merging and quantizing do not need a GPU, and must not take one from a chat.
    weights, _ = job_model_estimate(settings, params["model"], choose_device("cpu", "float32"))
    return {"memory_bytes": int(2 * weights + _WORKER_BYTES), "device": "cpu", "seconds": None}


def describe(params: dict) -> str:
    return f"Export {params.get('model', '?')} to a {str(params.get('quant', DEFAULT_QUANT)).upper()} GGUF"


def run(ctx) -> dict:
    from ..models.catalog import Catalog
    from .export import export_model

    try:
        done = export_model(ctx.params["model"], Catalog(ctx.store), ctx.settings, ctx.params["quant"],
                            ctx.progress, ctx.cancelled)
    except LoadCancelled:   # the half-written file was never renamed into place: nothing to clean up
        ctx.log.info("export cancelled; no GGUF was registered")
        return {"cancelled": True}
    ctx.progress(1.0, f"{done['bytes'] / 1e6:.0f} MB GGUF written in {done['seconds']:.0f} s")
    return done
