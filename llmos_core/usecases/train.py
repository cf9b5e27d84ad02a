"""Training settings from the Train page's form or from `train`'s flags -> checked params, estimate, job.

Both sides are built from TrainParams' field metadata (help, label, flag, choices, range, step), as
LLaMA-Factory's hparams dataclasses feed both its CLI and its web UI: a knob added there shows up on
the page and on the command line with the same help and the same limits.
"""
from __future__ import annotations

import argparse
from dataclasses import MISSING, dataclass, fields
from typing import Any

from ..accounts import User
from ..errors import InvalidInput
from ..training import job as train_job
from ..training.params import (PREFERENCE_DEFAULTS, PREFERENCE_METHODS, PRESETS, TrainParams, help_text,
                               preference_defaults)

ROLES = ("text", "prompt", "input", "response")   # input: joined to the prompt (Alpaca)
TYPES = {"int": int, "float": float, "str": str, "bool": bool}


@dataclass(frozen=True)
class Knob:
    """One setting of a run, as a form field and a command-line option."""
    name: str
    kind: type                    # int, float, str or bool
    label: str                    # "" when the page does not show it
    flag: str                     # "" when the CLI does not take it
    help: str
    choices: tuple
    low: Any
    high: Any
    step: Any
    lora_only: bool
    in_presets: bool              # a preset sets it, so the page keeps one value per preset
    by_method: bool               # a preference method has its own default, so the page keeps one per method
    methods: tuple = ()           # only these methods use it (empty: every method)

    def applies(self, values: dict[str, Any]) -> bool:
        """Whether the knob means anything for the method (and weights) chosen so far in `values`."""
        method = values.get("method", "lora")
        tuning = values.get("weights", "lora") if method in PREFERENCE_METHODS else method
        return (not self.methods or method in self.methods) and (not self.lora_only or tuning == "lora")

    def default(self, preset: str | None = None, method: str | None = None, weights: str = "lora") -> Any:
        """A preference method's own default (params.preference_defaults) first: the presets are tuned for
        `lora` and `full`; then the preset's value; then TrainParams'."""
        own = preference_defaults(method, weights)
        if self.name in own:
            return own[self.name]
        if preset is not None and self.name in PRESETS[preset]:
            return PRESETS[preset][self.name]
        value = next(f for f in fields(TrainParams) if f.name == self.name).default
        return None if value is MISSING else value


def knobs() -> list[Knob]:
    """Every setting the page or the CLI offers, in TrainParams' order."""
    preset_keys = {key for preset in PRESETS.values() for key in preset}
    found = []
    for f in fields(TrainParams):
        meta = f.metadata
        if not (meta.get("label") or meta.get("flag")):
            continue
        found.append(Knob(f.name, TYPES[str(f.type)], meta["label"], meta["flag"], meta["help"], meta["choices"],
                          meta["low"], meta["high"], meta["step"], meta["lora_only"], f.name in preset_keys,
                          any(f.name in d for d in PREFERENCE_DEFAULTS.values()),
                          meta["methods"]))
    return found


def form_knobs() -> list[Knob]:
    return [k for k in knobs() if k.label]


def params_from_form(model: str, data: str, name: str, mapping: dict, values: dict[str, Any]) -> dict:
    """The page's widgets (knob name -> value) -> params for `check_run`; widgets give floats for ints."""
    params = {"model": model, "data": data, "name": name.strip(), "mapping": mapping}
    for k in form_knobs():
        if k.name in values:
            params[k.name] = k.kind(values[k.name])
    return params


# ---------------------------------------------------------------- the CLI side


def add_cli_options(parser: argparse.ArgumentParser) -> None:
    """--model, --data, --preset, --map and one flag per knob that has one."""
    parser.add_argument("--model", required=True, help=help_text("model"))
    parser.add_argument("--data", required=True, help=help_text("data"))
    parser.add_argument("--preset", choices=sorted(PRESETS), help="start from a preset; other options override it")
    for k in knobs():
        if not k.flag:
            continue
        if k.kind is bool:
            # --keep-best / --no-keep-best: a knob on by default must be possible to turn off
            parser.add_argument(k.flag, dest=k.name, action=argparse.BooleanOptionalAction, default=None,
                                help=k.help)
        else:
            parser.add_argument(k.flag, dest=k.name, type=k.kind, choices=k.choices or None, help=k.help)
    parser.add_argument("--map", action="append", default=[], metavar="ROLE=COLUMN",
                        help="CSV/JSONL field for text, prompt, input (joined to the prompt) or response, "
                             "e.g. --map prompt=question")


def params_from_cli(args: argparse.Namespace) -> dict:
    """A preset (if given), overridden by the flags that were given."""
    params = dict(PRESETS[args.preset]) if args.preset else {}
    params.update(preference_defaults(args.method, args.weights or "lora"), model=args.model, data=args.data)
    for k in knobs():
        value = getattr(args, k.name, None) if k.flag else None
        if value is not None:
            params[k.name] = value
    mapping = {}
    for pair in args.map:
        role, _, column = pair.partition("=")
        if role not in ROLES or not column:
            raise InvalidInput(f"cannot read --map {pair!r}", "write it as text=COLUMN, prompt=COLUMN, input=COLUMN or response=COLUMN")
        mapping[role] = column
    if mapping:
        params["mapping"] = mapping
    return params


# ---------------------------------------------------------------- check and launch


@dataclass
class CheckedRun:
    """Params that passed every check (data read with the model's tokenizer, name free, memory enough),
    and the estimate the scheduler admits the job by: memory_bytes, device, seconds, plan, time."""
    params: dict
    estimate: dict

    def describe(self) -> str:
        return train_job.describe(self.params)


def check_run(params: dict, settings) -> CheckedRun:
    clean = train_job.validate(params, settings)
    return CheckedRun(clean, train_job.estimate(clean, settings))


def submit(engine, actor: User, run: CheckedRun, priority: int = 0, origin: str = "local") -> int:
    """`origin` "web" from the page: the data file must be in the data folder (access.check_job_params)."""
    return engine.scheduler.for_user(actor).submit("train", run.params, priority, origin=origin)
