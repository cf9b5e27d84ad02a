"""Preference training: DPO, ORPO and KTO with TRL's trainers, on the same job machinery as LoRA and full
fine-tuning (trainer.py runs them; the callback, checkpoints, Stop and Resume are the same).

Data: JSONL or CSV with `prompt`, `chosen`, `rejected` (pairs), or `prompt`, `completion`, `label` (a reply
marked good or bad: KTO only; KTO takes pairs too, as one good and one bad reply each). llmos_core.feedback
reads them (bounded, errors name the line). Each prompt is rendered the way Chat renders it (the model's
chat template, else Chat's plain format), so the model learns on the text it will be given.

Trainers: TRL's DPOTrainer, KTOTrainer and ORPOTrainer (trl.experimental), all subclasses of transformers'
Trainer. The reference model of DPO and KTO is the base itself with the LoRA adapter switched off (no second
copy) under LoRA, a frozen copy under full fine-tuning; ORPO needs none. Nothing may reach the hub: TRL's
trainers ping it on start unless telemetry is off, so `offline()` turns it off before one is built.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass

from ..errors import InvalidInput
from . import data as datalib

# What the live curve keeps of TRL's log lines, under our names (eval_ ones from the validations).
LOGGED = {"rewards/margins": "reward_margin", "rewards/accuracies": "reward_accuracy",
          "eval_rewards/margins": "eval_reward_margin", "eval_rewards/accuracies": "eval_reward_accuracy"}


# ---------------------------------------------------------------- the file

def check_shape(dataset: datalib.Dataset, method: str) -> None:
    """DPO and ORPO need pairs; KTO takes pairs or labelled replies, with good and bad ones both."""
    if method in ("dpo", "orpo") and dataset.shape != datalib.PREFERENCE:
        raise InvalidInput(f"{method.upper()} learns from pairs, and {dataset.path.name} holds {dataset.shape} examples",
                           "give a JSONL or CSV with prompt, chosen and rejected (the Feedback view exports one), "
                           "or choose kto for replies marked good or bad")
    if method == "kto":
        if dataset.shape not in (datalib.PREFERENCE, datalib.LABELLED):
            raise InvalidInput(f"KTO learns from replies marked good or bad, and {dataset.path.name} holds "
                               f"{dataset.shape} examples", "give prompt, completion, label (or prompt, chosen, rejected)")
        labels = {e["label"] for e in dataset.examples} if dataset.shape == datalib.LABELLED else {True, False}
        if labels != {True, False}:
            raise InvalidInput(f"KTO needs good and bad replies, and every label in {dataset.path.name} is "
                               f"{labels.pop()}", "mark some replies the other way too")


# ---------------------------------------------------------------- rows for TRL

def completion_text(tokenizer, messages: list[dict]) -> tuple[str, str]:
    """(prompt as rendered for the model, the reply as it follows it); TRL adds the EOS, so a template's
    end-of-turn marker that is the EOS is not written twice."""
    prompt, reply, _ = datalib.to_prompt_response(tokenizer, {"messages": messages})
    eos = tokenizer.eos_token or ""
    if eos and reply.rstrip().endswith(eos):
        reply = reply.rstrip()[:-len(eos)]
    return prompt, reply


def trl_rows(dataset: datalib.Dataset, tokenizer, method: str) -> list[dict]:
    """TRL's standard (text) rows: {"prompt", "chosen", "rejected"}, or for KTO {"prompt", "completion", "label"}."""
    rows = []
    for example in dataset.examples:
        prompt, reply = completion_text(tokenizer, example["messages"])
        if dataset.shape == datalib.LABELLED:
            rows.append({"prompt": prompt, "completion": reply, "label": bool(example["label"])})
            continue
        _, rejected = completion_text(tokenizer, example["messages"][:-1] + [
            {"role": "assistant", "content": example["rejected"]}])
        if method == "kto":   # a pair is a good and a bad reply to the same prompt
            rows += [{"prompt": prompt, "completion": reply, "label": True},
                     {"prompt": prompt, "completion": rejected, "label": False}]
        else:
            rows.append({"prompt": prompt, "chosen": reply, "rejected": rejected})
    return rows


@dataclass
class Split:
    train: list[dict]
    validation: list[dict]
    tokens: int             # every sequence's tokens (a pair: prompt + chosen and prompt + rejected)
    input_tokens: int       # train split only
    longest: int            # the longest sequence
    dropped: int            # rows whose prompt alone fills the block

    def summary(self) -> dict:
        """As data.Tokenized.summary(): a "block" is one pair (two sequences) or one KTO reply."""
        return {"train_blocks": len(self.train), "validation_blocks": len(self.validation), "tokens": self.tokens,
                "trained_tokens": self.input_tokens, "input_tokens": self.input_tokens, "dropped": self.dropped}

    @property
    def prompts(self) -> list[str]:
        """Validation prompts for the before/after samples."""
        return [r["prompt"] for r in self.validation[:3]]

    @property
    def references(self) -> list[str]:
        return [r.get("chosen", r.get("completion", "")) for r in self.validation[:3]]


def prepare(dataset: datalib.Dataset, tokenizer, params) -> Split:
    """The file's examples -> TRL's rows, split and counted (what data.tokenize is for the other methods)."""
    check_shape(dataset, params.method)
    return split_rows(trl_rows(dataset, tokenizer, params.method), tokenizer, params.block_size,
                      params.validation_fraction, params.seed)


def split_rows(rows: list[dict], tokenizer, block_size: int, validation_fraction: float, seed: int) -> Split:
    """Hold out a share (the same prompts stay together: a KTO pair's two replies fall on one side), count
    the tokens, and leave out rows whose prompt leaves no room for a reply in the block."""
    def length(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    prompts = sorted({r["prompt"] for r in rows})
    random.Random(seed).shuffle(prompts)
    held = set(prompts[:datalib.validation_count(len(prompts), validation_fraction)])
    train, validation, total, fed, longest, dropped = [], [], 0, 0, 0, 0
    for row in rows:
        n_prompt = length(row["prompt"])
        if n_prompt >= block_size - 1:
            dropped += 1
            continue
        replies = [row[k] for k in ("chosen", "rejected", "completion") if k in row]
        sizes = [min(block_size, n_prompt + length(r) + 1) for r in replies]
        total += sum(sizes)
        longest = max([longest] + sizes)
        (validation if row["prompt"] in held else train).append(row)
        if row["prompt"] not in held:
            fed += sum(sizes)
    if not train:
        raise InvalidInput(f"no example fits a block of {block_size} tokens with room for its reply",
                           "raise the block length or shorten the prompts")
    return Split(train, validation, total, fed, longest, dropped)


# ---------------------------------------------------------------- the trainer

def offline() -> None:
    """No request to the hub from this process: TRL's trainers send telemetry on start otherwise."""
    os.environ.update(HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", TRANSFORMERS_OFFLINE="1",
                      HF_DATASETS_OFFLINE="1", TRL_EXPERIMENTAL_SILENCE="1")
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = constants.HF_HUB_DISABLE_TELEMETRY = True
    import datasets

    datasets.disable_progress_bars()   # TRL maps the rows through `datasets`: no bars in the job's log


def config_class(method: str):
    if method == "dpo":
        from trl import DPOConfig as config
    elif method == "kto":
        from trl import KTOConfig as config
    else:
        from trl.experimental.orpo import ORPOConfig as config
    return config


def config_options(params) -> dict:
    """What TRL's configs take beyond TrainingArguments. TRL defaults gradient checkpointing on; the memory
    estimate counts a run without it, as for the other methods."""
    options = {"beta": params.beta, "max_length": params.block_size, "gradient_checkpointing": False,
               "dataset_num_proc": None}
    if params.method == "dpo" and params.sft_weight > 0:   # RPO: DPO's loss plus the chosen reply's NLL
        options.update(loss_type=["sigmoid", "sft"], loss_weights=[1.0, params.sft_weight])
    return options


def make_trainer(params, model, tokenizer, args, train_rows: list[dict], validation_rows: list[dict], callbacks: list):
    """TRL's trainer for the method, on our rows; the reference model as the module docstring says."""
    from datasets import Dataset

    offline()
    train = Dataset.from_list(train_rows)
    validation = Dataset.from_list(validation_rows) if validation_rows else None
    common = dict(model=model, args=args, train_dataset=train, eval_dataset=validation, processing_class=tokenizer,
                  callbacks=callbacks)
    if params.method == "orpo":
        return reply_nll_orpo()(**common)
    reference = None
    if params.tuning == "full":   # a frozen copy of the start; under LoRA TRL switches the adapter off instead
        import copy

        reference = copy.deepcopy(model).eval().requires_grad_(False)
    if params.method == "kto":
        from trl import KTOTrainer

        return KTOTrainer(ref_model=reference, **common)
    from trl import DPOTrainer

    return DPOTrainer(ref_model=reference, **common)


def reply_nll(logits, labels):
    """Mean NLL of the reply's tokens: `logits` are the chosen rows' logits without the last position, `labels`
    the chosen rows' labels (-100 over the prompt and padding), padded to any length."""
    import torch

    labels = labels[:, 1:]
    width = logits.shape[1]
    if labels.shape[1] < width:
        labels = torch.nn.functional.pad(labels, (0, width - labels.shape[1]), value=-100)
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                             labels[:, :width].reshape(-1).to(logits.device), ignore_index=-100)


def reply_nll_orpo():
    """TRL's ORPOTrainer with the paper's SFT term: the chosen reply's NLL given the prompt. TRL's takes the
    NLL over prompt and reply together, and with a chat template's system prompt the prompt is three quarters
    of every row: measured (docs/figures/h32d.md), that ORPO taught the rendered prompt and lost the reply's
    form (0 of 15 held-out prompts followed the rule where SFT and DPO followed it on every one)."""
    from trl.experimental.orpo import ORPOTrainer

    class ReplyNLLORPOTrainer(ORPOTrainer):
        def concatenated_forward(self, model, batch):
            outputs = super().concatenated_forward(model, batch)
            chosen_logits = outputs[2]
            return outputs[:4] + (reply_nll(chosen_logits, batch["chosen_labels"]),) + outputs[5:]

    return ReplyNLLORPOTrainer


def log_values(logs: dict) -> dict:
    """The reward figures of a TRL log line under the curve's names."""
    return {ours: float(logs[theirs]) for theirs, ours in LOGGED.items() if isinstance(logs.get(theirs), (int, float))}
