"""Training knobs come from TrainParams' metadata: the page's fields and the CLI's flags carry the same
help, choices and limits, and both give the same params."""
import argparse

import pytest

from llmos_core.errors import InvalidInput
from llmos_core.training.params import METHODS, PRESETS, TrainParams, help_text
from llmos_core.usecases import train as train_usecase


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(exit_on_error=False)
    train_usecase.add_cli_options(p)
    return p


def test_every_knob_has_help_and_the_form_matches_the_flags():
    knobs = {k.name: k for k in train_usecase.knobs()}
    assert all(k.help for k in knobs.values())
    assert knobs["method"].choices == METHODS and knobs["method"].flag == "--method"
    assert (knobs["block_size"].low, knobs["block_size"].high) == (8, 131072)
    assert knobs["lora_r"].lora_only and not knobs["learning_rate"].lora_only
    assert knobs["learning_rate"].default("Full fine-tune") == PRESETS["Full fine-tune"]["learning_rate"]
    assert knobs["seed"].default("Quick LoRA") == 42 and not knobs["seed"].in_presets
    form = [k.name for k in train_usecase.form_knobs()]
    assert form[:7] == ["method", "weights", "beta", "sft_weight", "max_steps", "epochs", "learning_rate"]
    assert "name" not in form and not knobs["sft_weight"].applies({"method": "orpo"})
    # The form shows what the method uses: beta and the weights for preference methods, LoRA's knobs under LoRA.
    assert not knobs["beta"].applies({"method": "lora"}) and knobs["beta"].applies({"method": "dpo"})
    assert knobs["lora_r"].applies({"method": "dpo", "weights": "lora"})
    assert not knobs["lora_r"].applies({"method": "kto", "weights": "full"}) and not knobs["lora_r"].applies({"method": "full"})
    assert parser().format_help().count(help_text("block_size")[:20]) == 1


def test_the_cli_and_the_form_give_the_same_params():
    args = parser().parse_args(["--model", "tiny", "--data", "d.txt", "--preset", "Full fine-tune", "--steps", "30",
                                "--lr", "0.01", "--block-size", "32", "--merge", "--map", "prompt=q"])
    from_cli = train_usecase.params_from_cli(args)
    from_form = train_usecase.params_from_form(
        "tiny", "d.txt", " ", {"prompt": "q"},
        {**PRESETS["Full fine-tune"], "max_steps": 30.0, "learning_rate": 0.01, "block_size": 32.0, "merge": True})
    assert TrainParams.from_dict(from_cli) == TrainParams.from_dict(from_form)
    assert isinstance(from_form["max_steps"], int) and from_form["name"] == ""


def test_bad_values_are_refused_with_the_limits():
    with pytest.raises(argparse.ArgumentError):
        parser().parse_args(["--model", "m", "--data", "d", "--method", "qlora"])
    args = parser().parse_args(["--model", "m", "--data", "d", "--map", "question"])
    with pytest.raises(InvalidInput, match="--map"):
        train_usecase.params_from_cli(args)
    with pytest.raises(InvalidInput, match="block size 4 is out of range") as caught:
        TrainParams.from_dict({"model": "m", "data": "d", "block_size": 4})
    assert caught.value.hint == "use 8 to 131072"
    with pytest.raises(InvalidInput, match="unknown precision"):
        TrainParams.from_dict({"model": "m", "data": "d", "precision": "int3"})
