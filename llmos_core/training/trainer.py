"""One training run, in the worker process: load, evaluate, train with transformers' Trainer, evaluate,
save, register. Used by job.run() (and by each rank under torchrun, see distributed.py).

The Trainer does the loop; callback.py connects it to LLM OS (metrics, Stop, NaN, checkpoint marks);
model.py chooses the device and loads the model; checkpoints.py says which checkpoints are whole.
"""
from __future__ import annotations

import errno
import json
import math
import os
import resource
import time
from pathlib import Path

from ..errors import InsufficientMemory, JobError
from ..models.catalog import Catalog, ModelSpec
from ..paths import move, remove_tree
from ..settings import Settings
from . import data as datalib
from . import estimate as est
from .callback import RunState, make_callback
from .checkpoints import complete_checkpoints, remove_incomplete_checkpoints
from .model import Placement, base_folder, convert_apart, load_model, load_tokenizer
from .params import TrainParams

SAMPLE_TOKENS = 48
MAX_EVAL_BLOCKS = 64          # validation is a measurement, not a second training run: keep it short


def generate_samples(model, tokenizer, prompts: list[str], device: str) -> list[str]:
    """Greedy continuations: the same prompt before and after shows what training changed."""
    import torch

    templated = bool(getattr(tokenizer, "chat_template", None))
    was_training = model.training
    model.eval()
    outputs = []
    with torch.no_grad():
        for prompt in prompts:
            encoded = tokenizer(prompt, return_tensors="pt", add_special_tokens=not templated).to(device)
            out = model.generate(**encoded, max_new_tokens=SAMPLE_TOKENS, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id, use_cache=True)
            outputs.append(tokenizer.decode(out[0, encoded["input_ids"].shape[1]:], skip_special_tokens=True))
    if was_training:
        model.train()
    return outputs


def evaluate(trainer, has_validation: bool, preference: bool = False) -> dict:
    """Validation loss and perplexity; for a preference method the loss and how often, and by how much, the
    model's reward prefers the chosen reply (a perplexity of a preference loss means nothing)."""
    if not has_validation:
        return {"loss": None, "perplexity": None}
    figures = trainer.evaluate()
    loss = figures["eval_loss"]
    if preference:
        from .preference import log_values

        return {"loss": loss, "perplexity": None,
                **{k.removeprefix("eval_"): v for k, v in log_values(figures).items()}}
    return {"loss": loss, "perplexity": math.exp(loss) if loss < 50 else float("inf")}


def peak_memory(device: str) -> int:
    if device == "cuda":
        import torch

        return int(torch.cuda.max_memory_allocated())
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # Linux reports KB


# ---------------------------------------------------------------- the run

def training_arguments(params: TrainParams, placement: Placement, output_dir: Path, steps: int,
                       has_validation: bool = True):
    """TrainingArguments, or for a preference method TRL's config for it (a subclass) with its options."""
    from transformers import TrainingArguments

    extra = {}
    if params.preference:
        from . import preference

        TrainingArguments, extra = preference.config_class(params.method), preference.config_options(params)

    eval_every = est.eval_interval(params.eval_every, steps)
    save_every = params.save_every or max(1, steps // 5)
    # Keeping the best: a checkpoint at each validation, so the lowest point has one to go back to; the
    # Trainer keeps that one out of the rotation and loads it at the end (early stopping needs the same).
    keep_best = has_validation and (params.keep_best or params.patience > 0)
    if keep_best:
        save_every = eval_every
    optim = "sgd" if params.optimizer == "sgd" else ("adamw_torch_fused" if placement.device == "cuda" else "adamw_torch")
    return TrainingArguments(
        output_dir=str(output_dir), max_steps=steps, learning_rate=params.learning_rate,
        lr_scheduler_type=params.schedule, warmup_steps=int(round(params.warmup_ratio * steps)),
        optim=optim, weight_decay=params.weight_decay,
        per_device_train_batch_size=params.batch_size, per_device_eval_batch_size=params.batch_size,
        gradient_accumulation_steps=params.grad_accum, seed=params.seed, data_seed=params.seed,
        logging_steps=1, logging_nan_inf_filter=False, include_num_input_tokens_seen="non_padding",
        eval_strategy="steps" if has_validation else "no", eval_steps=eval_every, save_strategy="steps",
        save_steps=save_every, save_total_limit=2, load_best_model_at_end=keep_best,
        metric_for_best_model="eval_loss" if keep_best else None, greater_is_better=False if keep_best else None,
        report_to=[], disable_tqdm=True, remove_unused_columns=False,
        use_cpu=placement.device == "cpu", bf16=placement.precision == "bf16", fp16=placement.precision == "fp16",
        dataloader_pin_memory=placement.device == "cuda", ddp_find_unused_parameters=False if placement.world > 1 else None,
        **extra)


def train(ctx, catalog: Catalog, placement: Placement, stop_file: Path | None = None) -> dict:
    """The whole run. Returns the result shown on the page; raises JobError with a clear message."""
    import torch
    from transformers import Trainer

    if ctx.settings.threads:
        torch.set_num_threads(ctx.settings.threads)
    rank = int(os.environ.get("RANK", "0"))
    is_main = rank == 0
    settings = ctx.settings
    params = TrainParams.from_dict(ctx.params)
    name = params.name or params.default_name()
    spec = catalog.get(params.model)
    ctx.progress(0.01, f"preparing {spec.name}")
    convert_apart(spec, settings, catalog, lambda f, m: ctx.progress(0.01 + 0.04 * f, m))
    folder = base_folder(spec, settings, catalog, lambda f, m: ctx.progress(0.01 + 0.04 * f, m))
    tokenizer = load_tokenizer(folder)
    dataset = datalib.load(params.data, params.mapping)
    if params.preference:
        from . import preference

        tokens = preference.prepare(dataset, tokenizer, params)   # pairs or labelled replies, as TRL's rows
    else:
        tokens = datalib.tokenize(dataset, tokenizer, params.block_size, params.validation_fraction, params.seed)
    validation = tokens.validation[:MAX_EVAL_BLOCKS]
    steps = est.plan_steps(len(tokens.train), params.batch_size, params.grad_accum, placement.world,
                           params.max_steps, params.epochs)
    ctx.log.info("data: %s rows (%s), %s", dataset.rows, dataset.shape, tokens.summary())
    ctx.progress(0.05, f"loading {spec.name} for {params.method} training")
    try:
        model = load_model(spec, folder, params, placement, catalog)
    except torch.OutOfMemoryError as exc:
        raise _oom(params) from exc
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    ctx.log.info("parameters: %s trained of %s", trainable, total)

    run = RunState()
    checkpoints = ctx.checkpoint_dir
    args = training_arguments(params, placement, checkpoints, steps, bool(validation))
    callbacks = [make_callback(ctx, run, is_main, stop_file)]
    if params.patience and validation:
        from transformers import EarlyStoppingCallback

        callbacks.append(EarlyStoppingCallback(early_stopping_patience=params.patience))
    if params.preference:
        trainer = preference.make_trainer(params, model, tokenizer, args, tokens.train, validation, callbacks)
    else:
        trainer = Trainer(model=model, args=args, train_dataset=tokens.train, eval_dataset=validation or None,
                          data_collator=datalib.Collator(tokenizer.pad_token_id), callbacks=callbacks)
    device = str(trainer.args.device)

    before_path = ctx.work_dir / "before.json"
    if ctx.resume and before_path.exists():
        before = json.loads(before_path.read_text())
    else:
        ctx.progress(0.07, "measuring the model before training")
        before = {**evaluate(trainer, bool(validation), params.preference),
                  "samples": generate_samples(trainer.model, tokenizer, tokens.prompts, device) if is_main else []}
        if is_main:
            before_path.write_text(json.dumps(before))
    if placement.world > 1:
        # evaluate() marks the bare model as prepared by accelerate, and train() then skips the DDP wrap: each
        # rank would step on its own gradients, never averaged (found by tests/cluster/test_cluster_train.py)
        trainer.model.__dict__.pop("_is_accelerate_prepared", None)

    removed = remove_incomplete_checkpoints(checkpoints) if is_main else []
    if removed:
        ctx.log.warning("removed unfinished checkpoint(s): %s", ", ".join(removed))
    resume_from = None
    if ctx.resume:
        done = complete_checkpoints(checkpoints)
        resume_from = str(done[-1]) if done else None
        ctx.log.info("resuming from %s", resume_from or "the start (no finished checkpoint)")

    started = time.time()
    ctx.progress(0.1, "training")
    try:
        output = trainer.train(resume_from_checkpoint=resume_from)
    except torch.OutOfMemoryError as exc:
        raise _oom(params) from exc
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            remove_incomplete_checkpoints(checkpoints)
            good = complete_checkpoints(checkpoints)
            raise JobError(f"the disk filled up while saving a checkpoint; the last good one is "
                           f"{good[-1].name if good else 'none'}",
                           "free some disk space, then Resume the job") from exc
        raise
    train_seconds = time.time() - started

    if run.nan_step is not None:
        good = complete_checkpoints(checkpoints)
        raise JobError(f"the loss became NaN at step {run.nan_step}: training diverged and was stopped",
                       f"lower the learning rate (it was {params.learning_rate:g})"
                       + (" or use fp32" if placement.precision == "fp16" else "")
                       + (f"; the last good checkpoint, {good[-1].name}, is kept" if good else ""))
    result = {"model": name, "base_model": spec.name, "method": params.method, "steps": trainer.state.global_step,
              "planned_steps": steps, "data": tokens.summary() | {"rows": dataset.rows, "shape": dataset.shape},
              "trainable_parameters": trainable, "parameters": total, "device": device,
              "precision": placement.precision, "train_seconds": train_seconds,
              "tokens_seen": tokens_seen(trainer.state, run, tokens, params), "resumed_from_step": run.start_step,
              "before": before, "train_loss": output.training_loss}
    result["tokens_per_s"] = result["tokens_seen"] / train_seconds if train_seconds > 0 else None
    # Forward-only tokens of the validations during the run (their time is in train_seconds; the estimate counts them).
    mid_run_evals = sum(1 for h in run.history if "eval_loss" in h)
    result["eval_tokens"] = mid_run_evals * eval_pass_tokens(validation, tokens)
    if run.stopped:
        done = complete_checkpoints(checkpoints)
        result.update(stopped=True, checkpoint=done[-1].name if done else None)
        ctx.log.info("stopped at step %s; checkpoint %s kept", trainer.state.global_step, result["checkpoint"])
        return result
    result.update(best_checkpoint(trainer.state, args.load_best_model_at_end, steps))
    if result["stopped_early"]:
        ctx.log.info("stopped early at step %s: no lower validation loss in %s validations", result["steps"],
                     params.patience)
    if result["best_step"] != result["steps"]:
        ctx.log.info("keeping the best checkpoint, step %s (validation loss %.4f)", result["best_step"],
                     result["best_eval_loss"])
    ctx.progress(0.92, "measuring the model after training")
    after = evaluate(trainer, bool(validation), params.preference)   # every rank: evaluation is collective under torchrun
    if not is_main:
        return result
    result["after"] = {**after, "samples": generate_samples(trainer.model, tokenizer, tokens.prompts, device)}
    result["prompts"], result["references"] = tokens.prompts, tokens.references
    result["peak_memory_bytes"] = peak_memory(placement.device)
    ctx.progress(0.96, f"saving {name}")
    result["location"] = str(save_result(trainer.model, tokenizer, params, settings, name))
    register_result(catalog, spec, params, name, Path(result["location"]), ctx.job_id, owner=ctx.owner)
    return result


def tokens_seen(state, run: RunState, tokens, params: TrainParams) -> int:
    """Tokens fed in since this process started training. TRL's preference batches carry no `input_ids` the
    Trainer counts: there, the steps taken times the average item's tokens (a pair counts both sequences)."""
    seen = state.num_input_tokens_seen - run.start_tokens
    if seen > 0 or not params.preference:
        return seen
    per_item = tokens.input_tokens / max(len(tokens.train), 1)
    return int((state.global_step - run.start_step) * params.batch_size * params.grad_accum * per_item)


def eval_pass_tokens(validation: list[dict], tokens) -> int:
    """Tokens one validation pass reads."""
    if validation and "input_ids" not in validation[0]:   # preference rows: their sizes were counted apart
        return (tokens.tokens - tokens.input_tokens) * len(validation) // max(len(tokens.validation), 1)
    return sum(len(b["input_ids"]) for b in validation)


def best_checkpoint(state, kept_best: bool, planned: int) -> dict:
    """Which step the registered weights come from: the lowest validation loss when the best was kept (the
    Trainer loaded it at the end), else the last step; and whether early stopping ended the run."""
    folder = state.best_model_checkpoint if kept_best else None
    best = int(Path(folder).name.split("-")[-1]) if folder else state.global_step
    return {"best_step": best, "best_eval_loss": state.best_metric if folder else None,
            "stopped_early": kept_best and state.global_step < planned}


def _oom(params: TrainParams) -> InsufficientMemory:
    hint = ("use LoRA, which trains a small adapter instead of every weight" if params.tuning == "full"
            else "lower the batch size or the block length")
    return InsufficientMemory("training", 0, 0, 0, f"the device ran out of memory; {hint}")


def trained_dir(settings: Settings) -> Path:
    return settings.models_dir / "trained"


def save_result(model, tokenizer, params: TrainParams, settings: Settings, name: str) -> Path:
    """Write to a temporary folder and rename it into place: a failed save never leaves half a model,
    and an existing model of that name is never overwritten."""
    target = trained_dir(settings) / name
    if target.exists():
        raise JobError(f"a trained model folder named {name} already exists", "train again under another name")
    tmp = target.parent / f".{name}.tmp-{os.getpid()}"
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        to_save = model
        if params.tuning == "lora" and params.merge:
            to_save = model.merge_and_unload()
        to_save.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / "llmos-training.json").write_text(json.dumps(params.to_dict(), indent=1))
        move(tmp, target, trained_dir(settings))
    except OSError as exc:
        remove_tree(tmp, trained_dir(settings))
        raise JobError(f"could not save the trained model: {exc}",
                       "free some disk space; the checkpoints are kept, so Resume can finish the job") from exc
    return target


def register_result(catalog: Catalog, base: ModelSpec, params: TrainParams, name: str, folder: Path,
                    job_id: int, owner: int = 0) -> ModelSpec:
    adapter = params.tuning == "lora" and not params.merge
    what = "LoRA adapter" if adapter else ("merged LoRA" if params.tuning == "lora" else "full fine-tune")
    if params.preference:
        what = f"{params.method.upper()} {what}"
    spec = ModelSpec(name=name, source="trained", location=str(folder), task="causal-lm",
                     description=f"{what} of {base.name} on {Path(params.data).name} (job {job_id})",
                     license=base.license, chat=base.chat, sampling=dict(base.sampling),
                     data={"adapter": True, "base_model": base.name, "job": job_id} if adapter
                     else {"base_model": base.name, "job": job_id})
    return catalog.register(spec, owner=owner)   # the job's owner's model


__all__ = ["train", "save_result", "register_result", "trained_dir"]
