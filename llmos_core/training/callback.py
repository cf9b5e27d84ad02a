"""The TrainerCallback that connects transformers' Trainer to LLM OS: every log line becomes a metric
row (charted live), each step checks for Stop (save a checkpoint, then end), a NaN loss ends the run
without saving, and each finished checkpoint gets its mark (checkpoints.py).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import estimate as est
from .checkpoints import CHECKPOINT_MARK
from .preference import log_values


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
            values.update(log_values(logs))   # preference methods: reward margin and accuracy
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
