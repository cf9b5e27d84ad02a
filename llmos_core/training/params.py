"""The knobs of a training run: one dataclass with help text (reused by the CLI and the page), presets,
and the checks that run before a job is queued."""
from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass, field, fields

from ..errors import InvalidInput

METHODS = ("lora", "full")
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("linear", "cosine", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class TrainParams:
    model: str = field(metadata={"help": "the model to start from (a catalog name)"})
    data: str = field(metadata={"help": "the data file (.txt, .md, .jsonl, .csv), kept under the data folder"})
    name: str = field(default="", metadata={"help": "catalog name of the result; default <model>-<method>-<time>"})
    method: str = field(default="lora", metadata={"help": "lora: small adapter, little memory; full: every weight"})
    mapping: dict = field(default_factory=dict, metadata={
        "help": 'CSV/JSONL field names: {"text": col} or {"prompt": col, "response": col}'})
    validation_fraction: float = field(default=0.1, metadata={"help": "share of the data held out for validation"})
    max_steps: int = field(default=0, metadata={"help": "optimizer steps; 0 = run the given epochs"})
    epochs: float = field(default=1.0, metadata={"help": "passes over the training data (when max steps is 0)"})
    learning_rate: float = field(default=2e-4, metadata={"help": "peak learning rate (LoRA ~2e-4, full ~5e-5)"})
    schedule: str = field(default="linear", metadata={"help": "learning-rate schedule after warmup"})
    warmup_ratio: float = field(default=0.05, metadata={"help": "share of the steps spent warming up the rate"})
    optimizer: str = field(default="adamw", metadata={"help": "adamw, or sgd (less memory, needs a higher rate)"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    batch_size: int = field(default=4, metadata={"help": "blocks per step on each device"})
    grad_accum: int = field(default=1, metadata={"help": "steps whose gradients are summed before an update"})
    block_size: int = field(default=128, metadata={"help": "tokens per block (sequence length)"})
    seed: int = field(default=42, metadata={"help": "random seed: same seed, same data order and same curve"})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scale (alpha / r multiplies the update)"})
    lora_dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA input"})
    lora_targets: str = field(default="auto", metadata={
        "help": "comma-separated module names to adapt (q_proj,v_proj); auto: every attention and MLP projection"})
    merge: bool = field(default=False, metadata={"help": "LoRA: save a merged full model instead of the adapter"})
    precision: str = field(default="auto", metadata={"help": "auto: bf16 on GPUs that support it, else fp16; fp32 on CPU"})
    eval_every: int = field(default=0, metadata={"help": "steps between validations; 0 = about ten in the run"})
    save_every: int = field(default=0, metadata={"help": "steps between checkpoints; 0 = about five in the run"})
    gpus: int = field(default=0, metadata={"help": "GPUs for data-parallel training; 0 = all there are"})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainParams":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidInput(f"unknown training setting(s): {', '.join(unknown)}",
                               f"known: {', '.join(sorted(known))}")
        for required in ("model", "data"):
            if not values.get(required):
                raise InvalidInput(f"no {required} given", f"choose the {required} to train on")
        try:
            params = cls(**values)
            for f in fields(cls):   # JSON and forms give strings and floats; coerce to the field's type
                value = getattr(params, f.name)
                kind = {"int": int, "float": float, "bool": bool}.get(str(f.type))
                if kind is bool and isinstance(value, str):
                    setattr(params, f.name, value.strip().lower() in ("1", "true", "yes", "on"))
                elif kind is not None and value is not None and not isinstance(value, kind):
                    setattr(params, f.name, kind(float(value)) if kind is int else kind(value))
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"a training setting has the wrong type: {exc}") from exc
        params.check()
        return params

    def check(self) -> None:
        """Raise InvalidInput on any value that cannot make a sensible run."""
        def bad(what: str, hint: str) -> InvalidInput:
            return InvalidInput(what, hint)

        if self.method not in METHODS:
            raise bad(f"unknown method {self.method!r}", "use lora or full")
        if self.optimizer not in OPTIMIZERS:
            raise bad(f"unknown optimizer {self.optimizer!r}", "use adamw or sgd")
        if self.schedule not in SCHEDULES:
            raise bad(f"unknown schedule {self.schedule!r}", f"use {', '.join(SCHEDULES)}")
        if self.precision not in PRECISIONS:
            raise bad(f"unknown precision {self.precision!r}", f"use {', '.join(PRECISIONS)}")
        if not math.isfinite(self.learning_rate) or self.learning_rate <= 0:
            raise bad(f"learning rate {self.learning_rate} would never change the model",
                      "use a positive rate: about 2e-4 for LoRA, 5e-5 for full fine-tuning")
        if self.learning_rate > 1:
            raise bad(f"learning rate {self.learning_rate} is far too high", "use about 2e-4 for LoRA, 5e-5 for full")
        if self.max_steps < 0 or (self.max_steps == 0 and not (self.epochs > 0 and math.isfinite(self.epochs))):
            raise bad("the run has no length", "give max steps > 0 or epochs > 0")
        if not 0 <= self.validation_fraction < 0.9:
            raise bad(f"validation share {self.validation_fraction} is out of range", "use 0 to 0.5, e.g. 0.1")
        if not 0 <= self.warmup_ratio < 1:
            raise bad(f"warmup share {self.warmup_ratio} is out of range", "use 0 to 0.5")
        for name, low, high in (("batch_size", 1, 4096), ("grad_accum", 1, 1024), ("block_size", 8, 131072),
                                ("lora_r", 1, 1024), ("lora_alpha", 1, 4096), ("gpus", 0, 1024)):
            value = getattr(self, name)
            if not low <= value <= high:
                raise bad(f"{name.replace('_', ' ')} {value} is out of range", f"use {low} to {high}")
        if not 0 <= self.lora_dropout < 1:
            raise bad(f"LoRA dropout {self.lora_dropout} is out of range", "use 0 to 0.5")
        if self.name and not re.fullmatch(r"[\w.-]{1,80}", self.name):
            raise bad(f"bad model name {self.name!r}", "use letters, digits, '.', '-' and '_'")

    def default_name(self) -> str:
        stem = re.sub(r"[^\w.-]+", "-", self.model)[:50]
        return f"{stem}-{self.method}-{time.strftime('%Y%m%d-%H%M%S')}"

    def describe(self) -> str:
        what = "LoRA" if self.method == "lora" else "Full fine-tune"
        return f"{what} on {self.model}" + (f" -> {self.name}" if self.name else "")


# Presets: the page shows these by name, the knobs behind an expander.
PRESETS: dict[str, dict] = {
    "Quick LoRA": {"method": "lora", "learning_rate": 2e-4, "lora_r": 8, "lora_alpha": 16, "max_steps": 60,
                   "batch_size": 4, "grad_accum": 1, "block_size": 128, "optimizer": "adamw",
                   "schedule": "linear", "warmup_ratio": 0.05},
    "Full fine-tune": {"method": "full", "learning_rate": 5e-5, "max_steps": 0, "epochs": 1.0,
                       "batch_size": 4, "grad_accum": 1, "block_size": 128, "optimizer": "adamw",
                       "schedule": "cosine", "warmup_ratio": 0.05},
}


def help_text(name: str) -> str:
    return next(f.metadata.get("help", "") for f in fields(TrainParams) if f.name == name)
