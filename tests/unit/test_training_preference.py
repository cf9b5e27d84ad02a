"""Preference training (DPO, ORPO, KTO) on a tiny model: the data path (pairs and labelled replies, as TRL's
rows, split by prompt), the loss wiring (DPO starts at ln 2 with the policy equal to its reference; the reward
margin grows as it learns), and the job machinery (metrics, Stop and Resume, registration, the estimate)."""
from __future__ import annotations

import json
import math
import time

import pytest

from llmos_core.errors import InvalidInput
from llmos_core.jobs.context import JobContext
from llmos_core.models.catalog import Catalog
from llmos_core.settings import Settings
from llmos_core.store import Store
from llmos_core.training import data as datalib
from llmos_core.training import job, preference
from llmos_core.training.checkpoints import complete_checkpoints
from llmos_core.training.params import TrainParams

PROMPTS = ["hi there", "how are you today?", "translate the document", "hello", "what runs here?", "the fox",
           "the dog", "keep its structure", "thank you", "bold text"]


def write_pairs(path, n: int = 20):
    rows = [{"prompt": PROMPTS[i % len(PROMPTS)] + f" {i}", "chosen": "The quick brown fox.",
             "rejected": "Der Hund."} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def lab(tmp_path, tiny_base):
    settings = Settings(home=tmp_path / "home", threads=1)
    store = Store(settings.db_path)
    catalog = Catalog(store)
    spec = catalog.resolve(str(tiny_base))
    spec.name = "tiny-base"
    catalog.register(spec)
    pairs = write_pairs(tmp_path / "prefs.jsonl")

    class Lab:
        def params(self, **overrides) -> dict:
            base = {"model": "tiny-base", "data": str(pairs), "method": "dpo", "max_steps": 6, "learning_rate": 5e-2,
                    "block_size": 32, "batch_size": 4, "warmup_ratio": 0, "save_every": 3, "eval_every": 3,
                    "lora_dropout": 0.0, "validation_fraction": 0.2, "name": "prefs",
                    "sft_weight": 0.0}   # plain DPO: its loss starts at ln 2 (the default adds the chosen reply's)
            return job.validate({**base, **overrides}, settings)

        def context(self, params: dict, job_id: int = 1, resume: bool = False) -> JobContext:
            if not store.query("SELECT id FROM jobs WHERE id = ?", (job_id,)):
                store.execute("INSERT INTO jobs (id, kind, params, created) VALUES (?, 'train', ?, ?)",
                              (job_id, json.dumps(params), time.time()))
            return JobContext(job_id=job_id, kind="train", params=params, settings=settings, store=store,
                              work_dir=settings.jobs_dir / str(job_id), resume=resume)

        def metrics(self, job_id: int) -> list[dict]:
            rows = store.query("SELECT step, data FROM job_metrics WHERE job_id = ? ORDER BY rowid", (job_id,))
            return [{"step": r["step"], **json.loads(r["data"])} for r in rows]

    lab = Lab()
    lab.settings, lab.catalog, lab.pairs, lab.tmp = settings, catalog, pairs, tmp_path
    return lab


# ---------------------------------------------------------------- data

def test_pairs_and_labelled_files_load_as_preference_data(tmp_path):
    pairs = datalib.load(write_pairs(tmp_path / "p.jsonl", 4))
    assert pairs.shape == datalib.PREFERENCE and pairs.rows == 4
    assert pairs.examples[0]["messages"][-1] == {"role": "assistant", "content": "The quick brown fox."}
    assert pairs.preview(1)[0]["rejected"] == "Der Hund."
    labelled = tmp_path / "thumbs.csv"
    labelled.write_text('prompt,completion,label\nhi,"Hello, friend.",up\nhi,go away,down\n')
    data = datalib.load(labelled)
    assert data.shape == datalib.LABELLED and [e["label"] for e in data.examples] == [True, False]
    # Supervised methods on the same files learn the chosen / good replies only.
    from tests.tiny_models import make_tokenizer

    tokens = datalib.tokenize(data, make_tokenizer(), 64, validation_fraction=0)
    assert len(tokens.train) == 1


def test_methods_refuse_data_they_cannot_learn_from(tmp_path):
    labelled = tmp_path / "thumbs.jsonl"
    labelled.write_text(json.dumps({"prompt": "hi", "completion": "Hello.", "label": True}) + "\n")
    data = datalib.load(labelled)
    with pytest.raises(InvalidInput, match="DPO learns from pairs"):
        preference.check_shape(data, "dpo")
    with pytest.raises(InvalidInput, match="good and bad replies"):
        preference.check_shape(data, "kto")
    text = tmp_path / "notes.txt"
    text.write_text("plain text")
    with pytest.raises(InvalidInput, match="KTO learns from replies"):
        preference.check_shape(datalib.load(text), "kto")
    with pytest.raises(InvalidInput, match="beta"):
        TrainParams.from_dict({"model": "m", "data": "d", "method": "dpo", "beta": 0})


def test_rows_follow_chats_format_and_kto_splits_a_pair_into_a_good_and_a_bad_reply(tmp_path):
    from tests.tiny_models import make_tokenizer

    for templated in (False, True):
        tokenizer = make_tokenizer(chat_template=templated)
        data = datalib.load(write_pairs(tmp_path / "p.jsonl", 10))
        rows = preference.trl_rows(data, tokenizer, "dpo")
        expected = datalib.render_prompt(tokenizer, data.examples[0]["messages"][:-1])
        assert rows[0]["prompt"] == expected
        assert rows[0]["chosen"].strip().startswith("The quick brown fox.")
        assert not rows[0]["chosen"].rstrip().endswith(tokenizer.eos_token)   # TRL adds it once
        kto = preference.trl_rows(data, tokenizer, "kto")
        assert len(kto) == 20 and [r["label"] for r in kto[:2]] == [True, False]
        split = preference.split_rows(kto, tokenizer, 64, 0.2, seed=1)
        held = {r["prompt"] for r in split.validation}
        assert len(held) == 2 and not held & {r["prompt"] for r in split.train}   # a prompt's replies stay together
        assert split.tokens > split.input_tokens > 0 and split.summary()["train_blocks"] == 16


# ---------------------------------------------------------------- runs

def test_dpo_lora_learns_the_preference_with_live_reward_curves_and_registers_an_adapter(lab):
    figures = job.estimate(lab.params(), lab.settings)
    assert figures["plan"]["shape"] == "preference" and figures["plan"]["train_blocks"] == 16
    result = job.run(lab.context(lab.params()))
    rows = lab.metrics(1)
    losses = [r for r in rows if "loss" in r]
    assert len(losses) == 6 and math.isclose(losses[0]["loss"], math.log(2), abs_tol=1e-3)   # policy == reference
    assert all("reward_margin" in r and "reward_accuracy" in r for r in losses)
    assert losses[-1]["reward_margin"] > 0 and losses[-1]["loss"] < math.log(2)
    assert any("eval_reward_margin" in r for r in rows)
    assert result["after"]["reward_margin"] > result["before"]["reward_margin"]
    assert result["method"] == "dpo" and result["tokens_seen"] > 0
    assert result["estimate"]["memory_bytes"] > 0 and result["actual"]["memory_bytes"] > 0
    spec = lab.catalog.get("prefs")
    assert spec.data["adapter"] and "DPO LoRA adapter" in spec.description
    assert job.describe(lab.params(name="x")) == "DPO (LoRA) on tiny-base -> x"


@pytest.mark.parametrize("method, data", [("orpo", "pairs"), ("kto", "labelled")])
def test_orpo_and_kto_train_every_weight(lab, method, data):
    path = lab.pairs
    if data == "labelled":
        path = lab.tmp / "thumbs.jsonl"
        path.write_text("".join(json.dumps({"prompt": p, "completion": "The quick brown fox." if i % 2 else "Der Hund.",
                                            "label": bool(i % 2)}) + "\n" for i, p in enumerate(PROMPTS * 2)))
    params = lab.params(method=method, weights="full", data=str(path), learning_rate=1e-2, max_steps=4, name=method)
    result = job.run(lab.context(params))
    assert result["steps"] == 4 and result["trainable_parameters"] == result["parameters"]
    assert all("reward_margin" in r or "reward_accuracy" in r or method == "kto"
               for r in lab.metrics(1) if "loss" in r)
    assert not lab.catalog.get(method).data.get("adapter")


def test_a_stopped_dpo_run_resumes_from_its_checkpoint(lab, monkeypatch):
    params = lab.params(max_steps=6, save_every=3, eval_every=6)
    ctx = lab.context(params)
    from llmos_core.training import callback

    real = callback._should_stop
    monkeypatch.setattr(callback, "_should_stop", lambda c, f: real(c, f) or c.store.query(
        "SELECT COUNT(*) AS n FROM job_metrics WHERE job_id = 1")[0]["n"] >= 4)
    result = job.run(ctx)
    assert result["stopped"] and complete_checkpoints(ctx.checkpoint_dir)
    monkeypatch.setattr(callback, "_should_stop", real)
    result = job.run(lab.context(params, resume=True))
    assert result["resumed_from_step"] > 0 and result["steps"] == 6


def test_the_estimates_count_both_sequences_and_the_reference():
    from llmos_core.training import estimate as est

    assert est.flops_per_param_token("lora") == 4 and est.flops_per_param_token("dpo-lora") == 6
    assert est.flops_per_param_token("orpo-full") == 6 and est.flops_per_param_token("kto-full") == 12
    facts = est.ModelFacts(parameters=10_000_000, hidden=256, layers=4, heads=4, vocab=1000, intermediate=512)
    args = ("adamw", 4, 64, 8, 4, 4)   # optimizer, batch, block, LoRA rank, weight and compute bytes
    pair_run = est.memory_bytes(facts, "full", "adamw", 8, 64, 8, 4, 4)
    assert est.preference_memory_bytes(facts, "dpo", "full", *args) == pair_run + 4 * facts.parameters
    assert est.preference_memory_bytes(facts, "orpo", "full", *args) == pair_run   # no reference model
    assert est.preference_memory_bytes(facts, "dpo", "lora", *args) == est.memory_bytes(facts, "lora", *args[:1], 8,
                                                                                        *args[2:])


def test_dpo_takes_a_chosen_reply_loss_beside_the_preference_loss():
    plain = TrainParams.from_dict({"model": "m", "data": "d", "method": "dpo", "sft_weight": 0})
    assert "loss_type" not in preference.config_options(plain)
    rpo = TrainParams.from_dict({"model": "m", "data": "d", "method": "dpo"})   # the default (h32c's figures)
    options = preference.config_options(rpo)
    assert options["loss_type"] == ["sigmoid", "sft"] and options["loss_weights"] == [1.0, 1.0]
    config = preference.config_class("dpo")(output_dir="/tmp/unused", use_cpu=True, report_to=[], **options)
    assert config.loss_type == ["sigmoid", "sft"] and not config.gradient_checkpointing


def test_preference_methods_get_their_measured_defaults_on_the_page_the_cli_and_the_api():
    import argparse

    from llmos_core.training.params import PREFERENCE_DEFAULTS, PRESETS
    from llmos_core.usecases import train as train_usecase

    dpo = PREFERENCE_DEFAULTS["dpo"]
    api = TrainParams.from_dict({"model": "m", "data": "d", "method": "dpo"})
    assert (api.learning_rate, api.max_steps, api.sft_weight) == (dpo["learning_rate"], dpo["max_steps"], dpo["sft_weight"])
    assert TrainParams.from_dict({"model": "m", "data": "d", "method": "dpo", "learning_rate": 1e-5}).learning_rate == 1e-5
    assert TrainParams.from_dict({"model": "m", "data": "d"}).learning_rate == 2e-4   # lora keeps its own
    full = TrainParams.from_dict({"model": "m", "data": "d", "method": "orpo", "weights": "full"})
    assert full.learning_rate == PRESETS["Full fine-tune"]["learning_rate"] and full.max_steps == dpo["max_steps"]
    knobs = {k.name: k for k in train_usecase.knobs()}
    # The page: the method's default wins over the LoRA preset's, and the widget keeps one value per method.
    assert knobs["learning_rate"].default("Quick LoRA", "dpo") == dpo["learning_rate"]
    assert knobs["learning_rate"].default("Quick LoRA", "lora") == PRESETS["Quick LoRA"]["learning_rate"]
    assert knobs["learning_rate"].default("Quick LoRA", "kto", "full") == full.learning_rate
    assert knobs["learning_rate"].by_method and not knobs["seed"].by_method
    parser = argparse.ArgumentParser(exit_on_error=False)
    train_usecase.add_cli_options(parser)
    cli = train_usecase.params_from_cli(parser.parse_args(["--model", "m", "--data", "d", "--method", "dpo",
                                                           "--preset", "Quick LoRA"]))
    assert TrainParams.from_dict(cli) == TrainParams.from_dict({"model": "m", "data": "d", "method": "dpo",
                                                                **{k: v for k, v in PRESETS["Quick LoRA"].items()
                                                                   if k != "method"}, **dpo})
    given = train_usecase.params_from_cli(parser.parse_args(["--model", "m", "--data", "d", "--method", "orpo",
                                                             "--lr", "0.01"]))
    assert TrainParams.from_dict(given).learning_rate == 0.01


def test_orpo_learns_the_reply_not_the_prompt():
    """ORPO's SFT term is the chosen reply's NLL (the paper's), not TRL's NLL over prompt and reply: with a chat
    template's system prompt the prompt outweighs the reply three to one, and ORPO lost the reply's form."""
    import torch

    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)                    # the chosen rows' logits, last position dropped
    labels = torch.tensor([[-100, -100, -100, 4, 5, 2], [-100, -100, 7, 2, -100, -100]])   # prompt and padding -100
    picked = [(0, 2, 4), (0, 3, 5), (0, 4, 2), (1, 1, 7), (1, 2, 2)]   # (row, position, the token it predicts)
    expected = -sum(torch.log_softmax(logits[r, t], -1)[y] for r, t, y in picked) / len(picked)
    assert torch.allclose(preference.reply_nll(logits, labels), expected)
    assert torch.allclose(preference.reply_nll(logits, labels[:, :4]), -sum(   # labels shorter than the logits
        torch.log_softmax(logits[r, t], -1)[y] for r, t, y in picked if t < 3) / 3)
