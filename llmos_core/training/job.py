"""The "train" job kind: the contract of llmos_core/jobs/kinds.py.

validate() runs in the app or the CLI before anything is queued (bad data, bad knobs, a name taken, a
model that cannot fit); estimate() gives the scheduler the memory to admit on and the page the time
and cost; run() does the work in the worker process; describe() names the job in tables.
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from ..device import free_memory
from ..errors import InsufficientMemory, InvalidInput, LLMOSError, LoadCancelled, format_bytes
from ..models import fetch
from ..models.catalog import EMBEDDED, Catalog
from ..settings import Settings
from ..store import Store
from . import data as datalib
from . import estimate as est
from .params import PREFERENCE_METHODS, TrainParams, describe_method
from .model import base_folder, choose_placement, load_tokenizer, model_facts
from .trainer import MAX_EVAL_BLOCKS, trained_dir


# Stop saves a checkpoint; Resume (ctx.resume) continues from the last finished one.
RESUMABLE = True
# Parameters that are paths: from the web app they must lie in the data folder (access.check_job_params).
PATH_PARAMS = ("data",)


def price_per_hour() -> float:
    """Money per hour of this machine, for the cost estimate (LLMOS_PRICE_PER_HOUR; 0 = not shown)."""
    try:
        return max(0.0, float(os.environ.get("LLMOS_PRICE_PER_HOUR", "0") or 0))
    except ValueError:
        return 0.0


@dataclass
class Plan:
    """What the data gives once tokenized for a model: the figures shown before launch."""
    rows: int
    shape: str
    tokens: int
    train_blocks: int
    validation_blocks: int
    trained_tokens: int
    input_tokens: int
    dropped: int
    guessed: bool = False     # from the characters (rough_plan): the tokenizer is not there yet
    longest_block: int = 0    # tokens in the longest block: a batch is padded to its longest row, not to the
                              # block length, so short pairs need far less activation memory (0: unknown)

    @property
    def tokens_per_block(self) -> float:
        """Tokens fed in per block: what compute (and tokens/s) counts, prompts included."""
        return self.input_tokens / max(self.train_blocks, 1)


CHARS_PER_TOKEN = 4   # English text in the BPE vocabularies of these models; only until the tokenizer is there


def rough_plan(params: TrainParams) -> Plan:
    """The plan before the model's tokenizer exists (not converted yet), from the file's characters: text
    packs into full blocks; each pair or chat example is one block, padded to the longest in its batch."""
    dataset = datalib.load(params.data, params.mapping)
    chars = [len(json.dumps(e, ensure_ascii=False)) if "messages" in e else sum(map(len, e.values()))
             for e in dataset.examples]
    tokens = sum(chars) // CHARS_PER_TOKEN
    if params.preference:   # an item: a pair (both sequences) or one KTO reply (a KTO pair gives two)
        items = dataset.rows * (2 if params.method == "kto" and dataset.shape == datalib.PREFERENCE else 1)
        n_val = datalib.validation_count(items, params.validation_fraction)
        per_item = tokens // max(items, 1)
        return Plan(dataset.rows, dataset.shape, tokens, items - n_val, n_val, (items - n_val) * per_item,
                    (items - n_val) * per_item, 0, guessed=True,
                    longest_block=min(params.block_size, max(chars, default=0) // CHARS_PER_TOKEN + 1))
    if dataset.shape == datalib.TEXT:
        blocks = max(1, tokens // params.block_size)
        per_block = params.block_size
    else:
        blocks = dataset.rows
        per_block = min(params.block_size, max(chars, default=0) // CHARS_PER_TOKEN + 1)
    n_val = datalib.validation_count(blocks, params.validation_fraction)
    return Plan(dataset.rows, dataset.shape, tokens, blocks - n_val, n_val, (blocks - n_val) * per_block,
                (blocks - n_val) * per_block, 0, guessed=True, longest_block=per_block)


_plans: dict[tuple, Plan] = {}
_plans_lock = threading.Lock()


def plan(params: TrainParams, settings: Settings, catalog: Catalog) -> Plan | None:
    """Tokenize the data with the model's tokenizer (cached per file, model and knobs). None when the model
    is not downloaded or converted yet: the run checks the data again once it has the tokenizer."""
    spec = catalog.get(params.model)
    root = spec
    while root.data.get("adapter"):
        root = catalog.get(root.data["base_model"])
    if not fetch.is_ready(root, settings):
        return None
    path = Path(params.data)
    key = (str(path), path.stat().st_mtime, root.name, root.location, params.block_size,
           params.validation_fraction, params.seed, tuple(sorted(params.mapping.items())), params.method)
    with _plans_lock:
        if key in _plans:
            return _plans[key]
    dataset = datalib.load(path, params.mapping)
    tokenizer = load_tokenizer(base_folder(spec, settings, catalog))
    if params.preference:
        from .preference import prepare

        split = prepare(dataset, tokenizer, params)
        result = Plan(dataset.rows, dataset.shape, split.tokens, len(split.train), len(split.validation),
                      split.input_tokens, split.input_tokens, split.dropped, longest_block=split.longest)
        with _plans_lock:
            _plans[key] = result
        return result
    tokens = datalib.tokenize(dataset, tokenizer, params.block_size, params.validation_fraction, params.seed)
    longest = max((len(b["input_ids"]) for b in tokens.train + tokens.validation), default=params.block_size)
    result = Plan(dataset.rows, dataset.shape, tokens.tokens, len(tokens.train), len(tokens.validation),
                  tokens.trained_tokens, tokens.input_tokens, tokens.dropped, longest_block=longest)
    with _plans_lock:
        _plans[key] = result
    return result


def _catalog(settings: Settings) -> Catalog:
    return Catalog(Store(settings.db_path))


# ---------------------------------------------------------------- the contract

def validate(params: dict, settings: Settings) -> dict:
    """Clean params, or InvalidInput / ModelNotFound / InsufficientMemory with what to do."""
    clean = TrainParams.from_dict(dict(params))
    catalog = _catalog(settings)
    catalog.get(clean.model)   # ModelNotFound names the catalog
    data_path = Path(clean.data).expanduser()
    if not data_path.is_file():
        raise InvalidInput(f"the data file {clean.data} does not exist", "upload it or give an existing file")
    # The job must not depend on a file the user may move: keep a copy under the data folder.
    if not datalib.is_kept_dataset(settings, data_path):
        datalib.load(data_path, clean.mapping)   # check before copying
        data_path = datalib.save_upload(settings, data_path.name, data_path.read_bytes())
    clean.data = str(data_path.resolve())
    dataset = datalib.load(data_path, clean.mapping)
    if clean.preference:
        from .preference import check_shape

        check_shape(dataset, clean.method)
    clean.name = clean.name or clean.default_name()
    if clean.name in EMBEDDED or clean.name in catalog.names() or (trained_dir(settings) / clean.name).exists():
        raise InvalidInput(f"a model named {clean.name!r} already exists", "give the result another name")
    if clean.workers > 1 and not settings.cluster:
        raise InvalidInput(f"training on {clean.workers} workers needs a Ray cluster, and LLMOS_CLUSTER is not set",
                           "set LLMOS_CLUSTER to the head's dashboard address, or train with 1 worker (the GPUs "
                           "of this machine train together through --gpus)")
    plan(clean, settings, catalog)   # data shorter than one block, prompts that fill it: said now
    figures = estimate(clean.to_dict(), settings)
    total = free_memory(choose_device_for(figures["device"]))[1]
    if figures["worker_memory_bytes"] > total and not settings.cluster:   # on a cluster: the scheduler checks nodes
        hint = "lower the batch size or the block length"
        if clean.tuning == "full":
            lora = estimate({**clean.to_dict(), "method": "dpo" if clean.preference else "lora", "weights": "lora"},
                            settings)["memory_bytes"]
            hint = f"use LoRA instead: it needs about {format_bytes(lora)}"
        raise InsufficientMemory(f"{clean.describe()} (estimated)", figures["worker_memory_bytes"], total, total, hint)
    return clean.to_dict()


def choose_device_for(kind: str):
    from ..device import choose_device

    return choose_device("cuda" if kind == "cuda" else "cpu")


def estimate(params: dict, settings: Settings) -> dict:
    """{"memory_bytes", "device", "seconds"} for the scheduler, plus the figures behind them for the page."""
    p = TrainParams.from_dict(dict(params))
    catalog = _catalog(settings)
    spec = catalog.get(p.model)
    placement = choose_placement(p, settings)
    facts = model_facts(spec, settings, catalog)
    the_plan = plan(p, settings, catalog)
    world = p.workers if p.workers > 1 else placement.world   # processes whose batches make one step
    out = {"device": placement.device, "precision": placement.precision, "world": world, "workers": p.workers,
           "memory_bytes": 0, "worker_memory_bytes": 0, "seconds": None,
           "plan": the_plan.__dict__ if the_plan else None}
    if facts is None:
        return out
    compute_bytes = 4 if placement.precision == "fp32" else 2
    rough = the_plan or rough_plan(p)   # before the tokenizer exists: the file's characters, ~4 a token
    out["plan"] = rough.__dict__
    # Activations follow the longest row a batch can hold, which for short pairs is far below the block.
    width = min(p.block_size, rough.longest_block or p.block_size)
    # Ray Train workers each hold a whole replica: the job's memory is N of them, each on some node.
    if p.preference:
        per_worker = est.preference_memory_bytes(facts, p.method, p.tuning, p.optimizer, p.batch_size, width,
                                                 p.lora_r, placement.weight_bytes, compute_bytes)
    else:
        per_worker = est.memory_bytes(facts, p.method, p.optimizer, p.batch_size, width, p.lora_r,
                                      placement.weight_bytes, compute_bytes)
    out.update(memory_bytes=per_worker * p.workers, worker_memory_bytes=per_worker, parameters=facts.parameters)
    steps = est.plan_steps(rough.train_blocks, p.batch_size, p.grad_accum, world, p.max_steps, p.epochs)
    per_step = int(p.batch_size * p.grad_accum * world * rough.tokens_per_block)
    evals = steps // est.eval_interval(p.eval_every, steps) if rough.validation_blocks else 0
    eval_tokens = evals * min(rough.validation_blocks, MAX_EVAL_BLOCKS) * rough.tokens_per_block
    trained = facts.parameters if p.tuning == "full" else est.lora_parameters(facts, p.lora_r)
    timing = est.estimate_time(settings, spec.name, p.estimate_key, placement.device, facts.parameters, steps, per_step,
                               eval_tokens, p.workers, trained)
    out.update(seconds=timing.seconds, time=timing.to_dict(), cost=timing.cost(price_per_hour()),
               price_per_hour=price_per_hour() or None)
    return out


def describe(params: dict) -> str:
    method = params.get("method", "lora")
    what = describe_method(method, params.get("weights", "lora") if method in PREFERENCE_METHODS else method)
    return f"{what} on {params.get('model', '?')}" + (f" -> {params['name']}" if params.get("name") else "")


def run(ctx) -> dict:
    """In the worker: train, record how the estimate compared and teach the time estimate, then export
    the model to GGUF. A job resumed after training finished (stopped or failed in the export) only exports."""
    settings = ctx.settings
    catalog = Catalog(ctx.store)
    trained = ctx.work_dir / "trained.json"
    if ctx.resume and trained.exists():
        result = json.loads(trained.read_text())
        ctx.log.info("training finished before; resuming at the GGUF export")
    else:
        result = train_and_record(ctx, catalog)
        if result.get("stopped"):
            return result
        trained.write_text(json.dumps(result))
    if settings.export_gguf:
        export_step(ctx, catalog, result)
    if not ctx.cancelled():
        ctx.progress(1.0, f"done: {result['model']} is in the catalog"
                     + (" and served on llama.cpp" if (result.get("export") or {}).get("gguf") else ""))
    return result


def export_step(ctx, catalog: Catalog, result: dict) -> None:
    """The trained model as a Q8_0 GGUF: a step of the job with its own progress; Cancel stops it (Resume
    redoes it); a model that cannot be exported stays trained and usable on transformers, and says why."""
    from .export import export_model

    ctx.progress(0.96, "exporting to GGUF for llama.cpp")
    try:
        result["export"] = export_model(result["model"], catalog, ctx.settings,
                                        progress=lambda f, m: ctx.progress(0.96 + 0.04 * f, m),
                                        cancelled=ctx.cancelled)
        ctx.log.info("exported %s in %.0f s", result["export"]["gguf"], result["export"]["seconds"])
    except LoadCancelled:
        result["export"] = {"cancelled": True}
        ctx.progress(0.96, "GGUF export cancelled; Resume exports again (the trained model is kept)")
    except LLMOSError as exc:
        ctx.log.warning("GGUF export failed: %s (%s)", exc, exc.hint)
        result["export"] = {"error": str(exc), "hint": exc.hint}


def train_and_record(ctx, catalog: Catalog) -> dict:
    """Train, then record how the estimate compared and teach the time estimate."""
    from .trainer import train

    settings = ctx.settings
    params = TrainParams.from_dict(ctx.params)
    placement = choose_placement(params, settings)
    before = estimate(ctx.params, settings)
    if params.workers > 1:
        from .ray_train import launch

        result = launch(ctx, params.workers, before.get("worker_memory_bytes") or 0)
    elif placement.world > 1 and "RANK" not in os.environ:
        from .distributed import launch

        result = launch(ctx, placement)
    else:
        result = train(ctx, catalog, placement)
    result["estimate"] = {"seconds": before.get("seconds"), "memory_bytes": before.get("memory_bytes"),
                          "cost": before.get("cost"), "source": (before.get("time") or {}).get("source")}
    result["actual"] = {"seconds": result.get("train_seconds"), "memory_bytes": result.get("peak_memory_bytes"),
                        "cost": (result["train_seconds"] / 3600 * price_per_hour()) if price_per_hour() else None}
    fresh_steps = result["steps"] - (result.get("resumed_from_step") or 0)
    if not result.get("stopped") and fresh_steps > 0 and result.get("tokens_seen") and result.get("parameters"):
        # tokens_seen counts every worker's; the estimate learns what one device achieves
        flops = est.run_flops(params.estimate_key, result["parameters"], result["tokens_seen"] / params.workers,
                              result.get("eval_tokens", 0) / params.workers)
        est.record_run(settings, params.model, params.estimate_key, placement.device, flops, result["train_seconds"],
                       fresh_steps)
    if result.get("stopped"):
        ctx.progress(1.0, "stopped; Resume continues from the checkpoint")
    return result
