"""The knobs of a training run: one dataclass with help text (reused by the CLI and the page), presets,
and the checks that run before a job is queued."""
from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass, field, fields

from ..errors import InvalidInput
from ..paths import check_name

PREFERENCE_METHODS = ("dpo", "orpo", "kto")   # learn from preferences (preference.py), not from text alone
METHODS = ("lora", "full") + PREFERENCE_METHODS
TUNINGS = ("lora", "full")
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("linear", "cosine", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def knob(default, help: str, label: str = "", flag: str = "", choices: tuple = (), low=None, high=None,
         step=None, lora_only: bool = False, methods: tuple = (), **kw):
    """A field of TrainParams with what the page and the CLI need to show it: `help`, the page's `label`,
    the CLI `flag`, `choices` or a `low`..`high` range (checked too), the page's `step`; `lora_only`
    knobs mean nothing for full fine-tuning, `methods` knobs only for those methods. The page and the CLI
    build their fields from these."""
    meta = {"help": help, "label": label, "flag": flag, "choices": choices, "low": low, "high": high, "step": step,
            "lora_only": lora_only, "methods": methods}
    return field(default=default, metadata=meta, **kw)


@dataclass
class TrainParams:
    model: str = field(metadata={"help": "the model to start from (a catalog name)"})
    data: str = field(metadata={"help": "the data file (.txt, .md, .jsonl, .csv), kept under the data folder"})
    name: str = knob("", "catalog name of the result; default <model>-<method>-<time>", flag="--name")
    method: str = knob("lora", "lora: small adapter, little memory; full: every weight; dpo, orpo, kto: learn "
                       "from preferences (prompt, chosen, rejected; kto also thumbs up/down)", "Method", "--method",
                       METHODS)
    weights: str = knob("lora", "preference methods: train a LoRA adapter or every weight", "Weights trained",
                        "--weights", TUNINGS, methods=PREFERENCE_METHODS)
    beta: float = knob(0.1, "preference strength: DPO/KTO: how far from the base model the tuned one may move "
                       "(lower moves further); ORPO: the weight of the preference term beside the chosen reply's "
                       "loss", "Beta", "--beta", low=0.001, high=10.0, step=0.01, methods=PREFERENCE_METHODS)
    sft_weight: float = knob(0.0, "DPO: weight of a supervised loss on the chosen reply beside the preference loss "
                             "(RPO, default 1); plain DPO (0) can lower the rejected reply without making the "
                             "chosen one likely, and 1 keeps it likely", "Chosen-reply loss weight", "--sft-weight",
                             low=0.0, high=10.0, step=0.1, methods=("dpo",))
    mapping: dict = field(default_factory=dict, metadata={
        "help": 'CSV/JSONL field names: {"text": col} or {"prompt": col, "response": col}'})
    max_steps: int = knob(0, "optimizer steps; 0 = run the given epochs", "Max steps (0 = epochs)", "--steps",
                          low=0, high=1_000_000)
    epochs: float = knob(1.0, "passes over the training data (when max steps is 0)", "Epochs", "--epochs",
                         low=0.0, high=1000.0, step=0.5)
    learning_rate: float = knob(2e-4, "peak learning rate (LoRA ~2e-4, full ~5e-5; dpo, orpo, kto: 1e-3 on a "
                                "LoRA adapter by default)", "Learning rate", "--lr",
                                low=0.0, high=1.0, step=1e-5)
    schedule: str = knob("linear", "learning-rate schedule after warmup", "Schedule", "--schedule", SCHEDULES)
    warmup_ratio: float = knob(0.05, "share of the steps spent warming up the rate", "Warmup share", "--warmup",
                               low=0.0, high=0.5, step=0.01)
    optimizer: str = knob("adamw", "adamw, or sgd (less memory, needs a higher rate)", "Optimizer", "--optimizer",
                          OPTIMIZERS)
    seed: int = knob(42, "random seed: same seed, same data order and same curve", "Seed", "--seed",
                     low=0, high=2**31 - 1)
    batch_size: int = knob(4, "blocks per step on each device", "Batch size", "--batch-size", low=1, high=4096)
    grad_accum: int = knob(1, "steps whose gradients are summed before an update", "Gradient accumulation",
                           "--grad-accum", low=1, high=1024)
    block_size: int = knob(128, "tokens per block (sequence length)", "Block length (tokens)", "--block-size",
                           low=8, high=131072)
    validation_fraction: float = knob(0.1, "share of the data held out for validation", "Validation share",
                                      "--validation", low=0.0, high=0.5, step=0.05)
    lora_r: int = knob(8, "LoRA rank", "LoRA rank", "--lora-r", low=1, high=1024, lora_only=True)
    lora_alpha: int = knob(16, "LoRA scale (alpha / r multiplies the update)", "LoRA alpha", "--lora-alpha",
                           low=1, high=4096, lora_only=True)
    merge: bool = knob(False, "LoRA: save a merged full model instead of the adapter", "Save merged", "--merge",
                       lora_only=True)
    weight_decay: float = knob(0.0, "AdamW weight decay")
    lora_dropout: float = knob(0.05, "dropout on the LoRA input", lora_only=True)
    lora_targets: str = knob("auto", "comma-separated module names to adapt (q_proj,v_proj); auto: every attention "
                             "and MLP projection", flag="--lora-targets", lora_only=True)
    precision: str = knob("auto", "auto: bf16 on GPUs that support it, else fp16; fp32 on CPU", flag="--precision",
                          choices=PRECISIONS)
    eval_every: int = knob(0, "steps between validations on the held-out share; 0 = about ten in the run",
                           "Validate every (steps, 0 = auto)", "--eval-every", low=0, high=1_000_000)
    patience: int = knob(0, "validations in a row without a lower validation loss before the run stops early; "
                         "0 = never stop early", "Early-stop patience", "--patience", low=0, high=1000)
    keep_best: bool = knob(True, "register the checkpoint with the lowest validation loss, not the last step "
                           "(a checkpoint is saved at each validation)", "Keep the best", "--keep-best")
    save_every: int = knob(0, "steps between checkpoints; 0 = about five in the run", flag="--save-every")
    gpus: int = knob(0, "GPUs for data-parallel training; 0 = all there are", flag="--gpus", low=0, high=1024)
    # No label: the Train page shows it only when LLMOS_CLUSTER is set (a Ray cluster to place the workers on).
    workers: int = knob(1, "Ray Train workers (one process each, placed by Ray on the cluster's nodes; needs "
                        "LLMOS_CLUSTER); the batch size is per worker", flag="--workers", low=1, high=1024)

    @property
    def preference(self) -> bool:
        return self.method in PREFERENCE_METHODS

    @property
    def tuning(self) -> str:
        """Which weights change: "lora" (an adapter) or "full"; a preference method says by `weights`."""
        return self.weights if self.preference else self.method

    @property
    def estimate_key(self) -> str:
        """What the time estimate learns by: the method, and for a preference method the weights ("dpo-lora")."""
        return f"{self.method}-{self.tuning}" if self.preference else self.method

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
        # a preference method's measured defaults under what was given
        values = {**preference_defaults(values.get("method"), values.get("weights", "lora")), **values}
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

        for f in fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if meta.get("choices") and value not in meta["choices"]:
                raise bad(f"unknown {f.name.replace('_', ' ')} {value!r}", f"use {' or '.join(meta['choices'])}")
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
        for f in fields(self):   # whole-number knobs: their range (fractions get their own checks above)
            low, high, value = f.metadata.get("low"), f.metadata.get("high"), getattr(self, f.name)
            if str(f.type) == "int" and low is not None and not low <= value <= high:
                raise bad(f"{f.name.replace('_', ' ')} {value} is out of range", f"use {low} to {high}")
        if not 0 <= self.sft_weight <= 10:
            raise bad(f"chosen-reply loss weight {self.sft_weight} is out of range", "use 0 (plain DPO) to 10; 1 is usual")
        if not (0.001 <= self.beta <= 10 and math.isfinite(self.beta)):
            raise bad(f"beta {self.beta} is out of range", "use 0.001 to 10; 0.1 is usual")
        if not 0 <= self.lora_dropout < 1:
            raise bad(f"LoRA dropout {self.lora_dropout} is out of range", "use 0 to 0.5")
        if self.name:
            check_name(self.name, "model name")   # it becomes the result's folder under models/trained

    def default_name(self) -> str:
        stem = re.sub(r"[^\w.-]+", "-", self.model)[:50]
        return f"{stem}-{self.method}-{time.strftime('%Y%m%d-%H%M%S')}"

    def describe(self) -> str:
        return f"{describe_method(self.method, self.tuning)} on {self.model}" + (f" -> {self.name}" if self.name else "")


def describe_method(method: str, tuning: str) -> str:
    """"LoRA", "Full fine-tune", "DPO (LoRA)", ..."""
    base = "LoRA" if tuning == "lora" else "Full fine-tune"
    return base if method in TUNINGS else f"{method.upper()} ({'LoRA' if tuning == 'lora' else 'full'})"


# Presets: the page shows these by name, the knobs behind an expander.
PRESETS: dict[str, dict] = {
    "Quick LoRA": {"method": "lora", "learning_rate": 2e-4, "lora_r": 8, "lora_alpha": 16, "max_steps": 60,
                   "batch_size": 4, "grad_accum": 1, "block_size": 128, "optimizer": "adamw",
                   "schedule": "linear", "warmup_ratio": 0.05},
    "Full fine-tune": {"method": "full", "learning_rate": 5e-5, "max_steps": 0, "epochs": 1.0,
                       "batch_size": 4, "grad_accum": 1, "block_size": 128, "optimizer": "adamw",
                       "schedule": "cosine", "warmup_ratio": 0.05},
}


# A preference method's defaults, under what the user gives and over a preset's values (the presets are for
# lora and full): what the Train page shows and the CLI and API use when the method is dpo, orpo or kto.
# Measured, not guessed (docs/figures/h32c.md: 60 pairs whose chosen reply adds a sign-off the base never
# writes, LoRA r 8 on every projection of SmolLM2-135M, the rule's rate on held-out prompts of three kinds):
# - lr 1e-3, not LoRA's 2e-4: at 5e-4 and 8 steps no method moved the held-out replies at all (h32b);
#   at 1e-3 and 16 steps DPO with the chosen-reply loss signed off on 15 of 15 held-out prompts.
# - 16 steps of 4 pairs (not epochs): a few dozen pairs see one to three passes, and the run takes about
#   four minutes of CPU on a 2-core machine (the job's first estimate; 23 minutes under a load of 10).
# - DPO adds the chosen reply's NLL (sft_weight 1, TRL's RPO: loss_type ["sigmoid", "sft"]): plain DPO
#   learnt to lower the rejected reply's end and rambled on instead of signing off (h32b, 0 of 30).
#   ORPO has that term by design; beta stays TRL's 0.1.
# - ORPO keeps DPO's rate and length: with its supervised term on the reply (preference.reply_nll_orpo) it
#   signed off on 30 of 30 held-out prompts, as SFT and DPO did, in one bench run (docs/figures/h32d.md);
#   with TRL's term over prompt and reply, 0 of 15 (h32c).
# - KTO is not measured here: it gets DPO's rate and length (the same reference-model loss family).
# - These are for a LoRA adapter (the default weights); `weights full` keeps the full fine-tune preset's rate
#   (a rate of 1e-3 on every weight undoes the model) and was not measured either.
PREFERENCE_DEFAULTS: dict[str, dict] = {
    "dpo": {"learning_rate": 1e-3, "max_steps": 16, "warmup_ratio": 0.1, "sft_weight": 1.0},
    "orpo": {"learning_rate": 1e-3, "max_steps": 16, "warmup_ratio": 0.1},
    "kto": {"learning_rate": 1e-3, "max_steps": 16, "warmup_ratio": 0.1},
}


def preference_defaults(method: str | None, weights: str | None = "lora") -> dict:
    """The defaults above for `method` ({} for lora and full); under full weights, the full preset's rate."""
    found = dict(PREFERENCE_DEFAULTS.get(method or "", {}))
    if found and weights == "full":
        found["learning_rate"] = PRESETS["Full fine-tune"]["learning_rate"]
    return found

def help_text(name: str) -> str:
    return next(f.metadata.get("help", "") for f in fields(TrainParams) if f.name == name)
