"""One training run, in the worker process: load, evaluate, train with transformers' Trainer, evaluate,
save, register. Used by job.run() (and by each rank under torchrun, see distributed.py).

The Trainer does the loop; a TrainerCallback connects it to LLM OS: every log line becomes a metric
row (charted live), each step checks for Stop (save a checkpoint, then end), a NaN loss ends the run
without saving, and each finished checkpoint gets a mark so a half-written one is never resumed from.
"""
from __future__ import annotations

import errno
import json
import math
import os
import resource
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InsufficientMemory, InvalidInput, JobError, format_bytes
from ..models import fetch
from ..models.catalog import Catalog, ModelSpec
from ..settings import Settings
from . import data as datalib
from . import estimate as est
from .params import TrainParams

CHECKPOINT_MARK = ".llmos-complete"
SAMPLE_TOKENS = 48
MAX_EVAL_BLOCKS = 64          # validation is a measurement, not a second training run: keep it short


# ---------------------------------------------------------------- model and device

@dataclass
class Placement:
    device: str               # "cpu" | "cuda"
    precision: str            # "fp32" | "bf16" | "fp16"
    world: int = 1            # processes in data-parallel training

    @property
    def weight_bytes(self) -> int:
        return 4 if self.precision == "fp32" else 2


def choose_placement(params: TrainParams, settings: Settings) -> Placement:
    """CUDA with bf16 where supported (else fp16), else the CPU in fp32; the settings' device policy wins."""
    import torch

    on_cuda = settings.device != "cpu" and not settings.device.startswith("mps") and torch.cuda.is_available()
    if not on_cuda:
        if params.precision in ("bf16", "fp16"):
            raise InvalidInput(f"{params.precision} training needs a CUDA GPU; this run would be on the CPU",
                               "choose precision auto or fp32")
        return Placement("cpu", "fp32")
    precision = params.precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise InvalidInput("this GPU does not support bf16", "choose fp16 or auto")
    count = torch.cuda.device_count()
    world = count if params.gpus == 0 else min(params.gpus, count)
    return Placement("cuda", precision, max(1, world))


def base_folder(spec: ModelSpec, settings: Settings, catalog: Catalog, progress=None) -> Path:
    """The Hugging Face folder a run starts from (an adapter's base for adapter entries)."""
    if spec.data.get("adapter"):
        return base_folder(catalog.get(spec.data["base_model"]), settings, catalog, progress)
    if spec.task != "causal-lm":
        raise InvalidInput(f"{spec.name} is a {spec.task} model; training supports causal language models",
                           "choose a causal LM such as gemma-3-270m")
    return fetch.model_folder(spec, settings, progress)


def model_facts(spec: ModelSpec, settings: Settings, catalog: Catalog) -> est.ModelFacts | None:
    """Parameters and shape, from the converted folder or the GGUF header; None when not downloaded yet."""
    from ..models.backends import safetensors_parameter_bytes

    if spec.data.get("adapter"):
        return model_facts(catalog.get(spec.data["base_model"]), settings, catalog)
    if not fetch.is_ready(spec, settings):
        if spec.source in ("embedded", "gguf"):
            return est.ModelFacts(parameters=fetch.read_gguf_summary(fetch.gguf_path(spec, settings))["parameters"])
        return None
    folder = fetch.model_folder(spec, settings)
    n_params = safetensors_parameter_bytes(folder)[0] or sum(p.stat().st_size for p in folder.glob("*.bin")) // 4
    return est.ModelFacts.from_folder(folder, n_params)


def load_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if tokenizer.pad_token_id is None:   # batches need a pad; EOS is the usual stand-in (masked anyway)
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(spec: ModelSpec, folder: Path, params: TrainParams, placement: Placement, catalog: Catalog):
    """The model to train: fp32 weights for full fine-tuning (AMP does the low precision), the base in
    bf16/fp16 under LoRA on a GPU; LoRA adapters added with peft. An adapter entry is merged first."""
    import torch
    from transformers import AutoModelForCausalLM, set_seed

    set_seed(params.seed)   # LoRA's A matrices are random: same seed, same start
    dtype = torch.float32
    if params.method == "lora" and placement.precision != "fp32":
        dtype = torch.bfloat16 if placement.precision == "bf16" else torch.float16
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype)
    for adapter in _adapter_chain(spec, catalog):
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    if params.method == "lora":
        from peft import LoraConfig, get_peft_model

        targets = ([t.strip() for t in params.lora_targets.split(",") if t.strip()]
                   if params.lora_targets != "auto" else "all-linear")
        try:
            model = get_peft_model(model, LoraConfig(r=params.lora_r, lora_alpha=params.lora_alpha,
                                                     lora_dropout=params.lora_dropout, target_modules=targets,
                                                     task_type="CAUSAL_LM"))
        except ValueError as exc:   # peft: "Target modules ... not found in the base model"
            raise InvalidInput(f"LoRA cannot attach to {spec.name}: {exc}",
                               "use lora_targets auto, or names of its linear layers") from exc
    model.config.use_cache = False   # the KV cache is for generation; training only wastes memory on it
    return model


def _adapter_chain(spec: ModelSpec, catalog: Catalog) -> list[str]:
    """Adapter folders from the base upwards (an adapter trained on an adapter merges both)."""
    chain = []
    while spec.data.get("adapter"):
        chain.insert(0, spec.location)
        spec = catalog.get(spec.data["base_model"])
    return chain


# ---------------------------------------------------------------- checkpoints

def complete_checkpoints(folder: Path) -> list[Path]:
    """Checkpoints whose save finished (marked by the callback), oldest first."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob("checkpoint-*") if (p / CHECKPOINT_MARK).exists()
             and p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def remove_incomplete_checkpoints(folder: Path) -> list[str]:
    """A save cut short (disk full, kill) leaves a folder without the mark: delete it, never resume from it."""
    removed = []
    if folder.is_dir():
        for path in folder.glob("checkpoint-*"):
            if not (path / CHECKPOINT_MARK).exists():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
    return removed


# ---------------------------------------------------------------- the callback

@dataclass
class RunState:
    """What the callback saw, read by the run afterwards."""
    stopped: bool = False
    nan_step: int | None = None
    started: float = 0.0
    start_step: int = 0
    start_tokens: int = 0
    training: bool = False
    last_log: tuple[float, int] = (0.0, 0)
    history: list[dict] = field(default_factory=list)


def make_callback(ctx, run: RunState, is_main: bool, stop_file: Path | None = None):
    from transformers import TrainerCallback

    class JobCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            run.started = time.time()
            run.start_step, run.start_tokens = state.global_step, state.num_input_tokens_seen
            run.last_log = (run.started, state.num_input_tokens_seen)
            run.training = True

        def on_train_end(self, args, state, control, **kwargs):
            run.training = False   # evaluations after this are the "after" measurement, not curve points

        def on_step_end(self, args, state, control, **kwargs):
            if _should_stop(ctx, stop_file):
                run.stopped = True
                control.should_save = True          # Stop keeps what was learned so far
                control.should_training_stop = True
            if is_main and state.max_steps:
                done = state.global_step - run.start_step
                per_step = (time.time() - run.started) / max(done, 1)
                eta = per_step * (state.max_steps - state.global_step)
                ctx.progress(0.1 + 0.8 * state.global_step / state.max_steps,
                             f"step {state.global_step}/{state.max_steps}, ETA {est.format_seconds(eta)}")

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            loss = logs.get("loss", logs.get("eval_loss"))
            if loss is not None and not math.isfinite(loss):
                run.nan_step = state.global_step
                control.should_save = False         # never checkpoint NaN weights over good ones
                control.should_training_stop = True
            if not is_main or not run.training or "train_loss" in logs:   # train_loss: the end-of-run summary
                return
            now, seen = time.time(), state.num_input_tokens_seen
            values = {k: float(logs[k]) for k in ("loss", "eval_loss", "learning_rate", "grad_norm", "epoch")
                      if isinstance(logs.get(k), (int, float))}
            if "loss" in logs and now > run.last_log[0] and seen > run.last_log[1]:
                values["tokens_per_s"] = (seen - run.last_log[1]) / (now - run.last_log[0])
                run.last_log = (now, seen)
            if state.max_steps:
                done = state.global_step - run.start_step
                values["eta_s"] = (now - run.started) / max(done, 1) * (state.max_steps - state.global_step)
                values["progress"] = state.global_step / state.max_steps
            if values:
                ctx.metric(state.global_step, **values)
                run.history.append({"step": state.global_step, **values})

        def on_save(self, args, state, control, **kwargs):
            if is_main:
                folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if folder.is_dir():
                    (folder / CHECKPOINT_MARK).write_text(json.dumps({"step": state.global_step, "ts": time.time()}))
                    ctx.log.info("checkpoint saved: %s", folder.name)

    return JobCallback()


def _should_stop(ctx, stop_file: Path | None) -> bool:
    """Stop asked for; under torchrun every rank must agree on the same step, or the others would hang."""
    local = ctx.cancelled() or (stop_file is not None and stop_file.exists())
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        import torch

        flag = torch.tensor([1.0 if local else 0.0],
                            device="cuda" if torch.cuda.is_available() and dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())
    return local


# ---------------------------------------------------------------- samples and evaluation

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


def evaluate(trainer, has_validation: bool) -> dict:
    if not has_validation:
        return {"loss": None, "perplexity": None}
    loss = trainer.evaluate()["eval_loss"]
    return {"loss": loss, "perplexity": math.exp(loss) if loss < 50 else float("inf")}


def peak_memory(device: str) -> int:
    if device == "cuda":
        import torch

        return int(torch.cuda.max_memory_allocated())
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # Linux reports KB


# ---------------------------------------------------------------- the run

def training_arguments(params: TrainParams, placement: Placement, output_dir: Path, steps: int):
    from transformers import TrainingArguments

    eval_every = params.eval_every or max(1, steps // 10)
    save_every = params.save_every or max(1, steps // 5)
    optim = "sgd" if params.optimizer == "sgd" else ("adamw_torch_fused" if placement.device == "cuda" else "adamw_torch")
    return TrainingArguments(
        output_dir=str(output_dir), max_steps=steps, learning_rate=params.learning_rate,
        lr_scheduler_type=params.schedule, warmup_steps=int(round(params.warmup_ratio * steps)),
        optim=optim, weight_decay=params.weight_decay,
        per_device_train_batch_size=params.batch_size, per_device_eval_batch_size=params.batch_size,
        gradient_accumulation_steps=params.grad_accum, seed=params.seed, data_seed=params.seed,
        logging_steps=1, logging_nan_inf_filter=False, include_num_input_tokens_seen="non_padding",
        eval_strategy="steps", eval_steps=eval_every, save_strategy="steps", save_steps=save_every,
        save_total_limit=2, report_to=[], disable_tqdm=True, remove_unused_columns=False,
        use_cpu=placement.device == "cpu", bf16=placement.precision == "bf16", fp16=placement.precision == "fp16",
        dataloader_pin_memory=placement.device == "cuda", ddp_find_unused_parameters=False if placement.world > 1 else None,
    )


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
    folder = base_folder(spec, settings, catalog, lambda f, m: ctx.progress(0.01 + 0.04 * f, m))
    tokenizer = load_tokenizer(folder)
    dataset = datalib.load(params.data, params.mapping)
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
    trainer = Trainer(model=model, args=training_arguments(params, placement, checkpoints, steps),
                      train_dataset=tokens.train, eval_dataset=validation or None,
                      data_collator=datalib.Collator(tokenizer.pad_token_id),
                      callbacks=[make_callback(ctx, run, is_main, stop_file)])
    device = str(trainer.args.device)

    before_path = ctx.work_dir / "before.json"
    if ctx.resume and before_path.exists():
        before = json.loads(before_path.read_text())
    else:
        ctx.progress(0.07, "measuring the model before training")
        before = {**evaluate(trainer, bool(validation)),
                  "samples": generate_samples(trainer.model, tokenizer, tokens.prompts, device) if is_main else []}
        if is_main:
            before_path.write_text(json.dumps(before))

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
              "tokens_seen": trainer.state.num_input_tokens_seen - run.start_tokens, "resumed_from_step": run.start_step,
              "before": before, "train_loss": output.training_loss}
    result["tokens_per_s"] = result["tokens_seen"] / train_seconds if train_seconds > 0 else None
    if run.stopped:
        done = complete_checkpoints(checkpoints)
        result.update(stopped=True, checkpoint=done[-1].name if done else None)
        ctx.log.info("stopped at step %s; checkpoint %s kept", trainer.state.global_step, result["checkpoint"])
        return result
    ctx.progress(0.92, "measuring the model after training")
    after = evaluate(trainer, bool(validation))   # every rank: evaluation is collective under torchrun
    if not is_main:
        return result
    result["after"] = {**after, "samples": generate_samples(trainer.model, tokenizer, tokens.prompts, device)}
    result["prompts"], result["references"] = tokens.prompts, tokens.references
    result["peak_memory_bytes"] = peak_memory(placement.device)
    ctx.progress(0.96, f"saving {name}")
    result["location"] = str(save_result(trainer.model, tokenizer, params, settings, name))
    register_result(catalog, spec, params, name, Path(result["location"]), ctx.job_id)
    return result


def _oom(params: TrainParams) -> InsufficientMemory:
    hint = ("use LoRA, which trains a small adapter instead of every weight" if params.method == "full"
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
        if params.method == "lora" and params.merge:
            to_save = model.merge_and_unload()
        to_save.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / "llmos-training.json").write_text(json.dumps(params.to_dict(), indent=1))
        tmp.rename(target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise JobError(f"could not save the trained model: {exc}",
                       "free some disk space; the checkpoints are kept, so Resume can finish the job") from exc
    return target


def register_result(catalog: Catalog, base: ModelSpec, params: TrainParams, name: str, folder: Path,
                    job_id: int) -> ModelSpec:
    adapter = params.method == "lora" and not params.merge
    what = "LoRA adapter" if adapter else ("merged LoRA" if params.method == "lora" else "full fine-tune")
    spec = ModelSpec(name=name, source="trained", location=str(folder), task="causal-lm",
                     description=f"{what} of {base.name} on {Path(params.data).name} (job {job_id})",
                     license=base.license, chat=base.chat, sampling=dict(base.sampling),
                     data={"adapter": True, "base_model": base.name, "job": job_id} if adapter
                     else {"base_model": base.name, "job": job_id})
    return catalog.register(spec)


__all__ = ["train", "choose_placement", "model_facts", "format_bytes"]
