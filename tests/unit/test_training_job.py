"""The train job end to end on a tiny model, run in-process through its JobContext (what the worker does):
it learns memorizable text, registers a model that generates it, stops and resumes onto the same curve,
and stops clearly on NaN loss and on a full disk without damaging earlier checkpoints."""
from __future__ import annotations

import dataclasses
import errno
import json
import random
import time

import pytest

from llmos_core.engine import Engine
from llmos_core.errors import InsufficientMemory, InvalidInput, JobError, ModelNotFound
from llmos_core.jobs.context import JobContext
from llmos_core.models.catalog import Catalog
from llmos_core.settings import Settings
from llmos_core.store import Store
from llmos_core.training import estimate as est
from llmos_core.training import job, trainer
from llmos_core.training.checkpoints import CHECKPOINT_MARK, complete_checkpoints
from llmos_core.training.model import model_facts

FOX = "The quick brown fox jumps over the lazy dog."
GERMAN = "Der schnelle braune Fuchs springt über den faulen Hund."


@pytest.fixture
def lab(tmp_path, tiny_base):
    """A data folder with the tiny model registered and a file of memorizable text."""
    settings = Settings(home=tmp_path / "home", threads=1)   # one thread: tiny tensors, busy shared CPU
    store = Store(settings.db_path)
    catalog = Catalog(store)
    spec = catalog.resolve(str(tiny_base))
    spec.name = "tiny-base"
    catalog.register(spec)
    text = tmp_path / "fox.txt"
    text.write_text("\n\n".join([FOX] * 30))

    class Lab:
        def params(self, **overrides) -> dict:
            base = {"model": "tiny-base", "data": str(text), "method": "full", "max_steps": 8, "learning_rate": 1e-2,
                    "block_size": 32, "batch_size": 4, "warmup_ratio": 0, "save_every": 4, "eval_every": 4,
                    "lora_dropout": 0.0, "name": "fox"}
            return job.validate({**base, **overrides}, settings)

        def context(self, params: dict, job_id: int = 1, resume: bool = False, cls=JobContext) -> JobContext:
            if not store.query("SELECT id FROM jobs WHERE id = ?", (job_id,)):
                store.execute("INSERT INTO jobs (id, kind, params, created) VALUES (?, 'train', ?, ?)",
                              (job_id, json.dumps(params), time.time()))
            return cls(job_id=job_id, kind="train", params=params, settings=settings, store=store,
                       work_dir=settings.jobs_dir / str(job_id), resume=resume)

        def losses(self, job_id: int) -> dict[int, float]:
            rows = store.query("SELECT step, data FROM job_metrics WHERE job_id = ? ORDER BY rowid", (job_id,))
            return {r["step"]: json.loads(r["data"])["loss"] for r in rows if "loss" in json.loads(r["data"])}

    lab = Lab()
    lab.settings, lab.store, lab.catalog, lab.text = settings, store, catalog, text
    return lab


def test_full_run_memorizes_and_the_registered_model_generates_it(lab):
    params = lab.params(max_steps=40, eval_every=10, save_every=100)
    result = job.run(lab.context(params))
    assert result["after"]["loss"] < result["before"]["loss"] - 2          # validation loss fell a lot
    assert result["after"]["perplexity"] < result["before"]["perplexity"]
    assert any(FOX.split("fox")[1].strip() in s for s in result["after"]["samples"])
    assert not any("lazy dog" in s for s in result["before"]["samples"])
    # The live curve: a loss per step, validation points, learning rate, tokens/s.
    rows = [json.loads(r["data"]) for r in lab.store.query("SELECT data FROM job_metrics WHERE job_id = 1")]
    assert len([r for r in rows if "loss" in r]) == 40 and len([r for r in rows if "eval_loss" in r]) == 4
    assert all(r["tokens_per_s"] > 0 for r in rows if "loss" in r)
    assert result["estimate"]["seconds"] > 0 and result["actual"]["seconds"] > 0
    assert result["estimate"]["memory_bytes"] > 0 and result["actual"]["memory_bytes"] > 0
    # Registered: through the engine's normal load path, greedy generation says the memorized text.
    spec = lab.catalog.get("fox")
    assert spec.source == "trained" and not spec.data.get("adapter") and spec.data["base_model"] == "tiny-base"
    engine = Engine(lab.settings, primary=False, start_threads=False)
    try:
        with engine.models.use("fox") as model:
            ids = model.tokenizer("The quick brown", return_tensors="pt")
            out = model.model.generate(**ids, max_new_tokens=12, do_sample=False)
            assert "jumps over the lazy dog" in model.tokenizer.decode(out[0], skip_special_tokens=True)
    finally:
        engine.close()
    # The next estimate of this model learned from the run.
    assert "earlier tiny-base runs" in job.estimate(lab.params(name="fox2"), lab.settings)["time"]["source"]
    with pytest.raises(InvalidInput, match="already exists"):
        lab.params()   # the name is taken now


def test_the_first_estimate_measures_the_machine_once_for_every_engine_on_the_folder(lab, matmul_benchmarks):
    raw = {"model": "tiny-base", "data": str(lab.text), "max_steps": 8, "block_size": 32}
    for _ in range(2):   # as two app processes on one data folder would: each its own Engine and Settings
        engine = Engine(Settings(home=lab.settings.home, threads=1), primary=False, start_threads=False)
        try:
            params = job.validate(raw, engine.settings)        # the Train page's check estimates once,
            figures = job.estimate(params, engine.settings)    # then the page asks for the figures
        finally:
            engine.close()
        assert "matmul benchmark" in figures["time"]["source"] and figures["seconds"] > 0
    assert len(matmul_benchmarks) == 1


def test_lora_adapter_is_registered_and_merged_at_load(lab):
    result = job.run(lab.context(lab.params(method="lora", learning_rate=5e-2, max_steps=12, name="fox-lora")))
    assert result["after"]["loss"] < result["before"]["loss"]
    assert result["trainable_parameters"] < result["parameters"] / 2
    spec = lab.catalog.get("fox-lora")
    assert spec.data["adapter"] and spec.data["base_model"] == "tiny-base"
    assert (lab.settings.models_dir / "trained" / "fox-lora" / "adapter_config.json").exists()
    engine = Engine(lab.settings, primary=False, start_threads=False)
    try:
        with engine.models.use("fox-lora") as model:
            assert model.loaded.details["adapter"].endswith("fox-lora")
    finally:
        engine.close()


def test_the_export_step_says_why_it_cannot_export_and_a_resume_only_exports(lab, monkeypatch):
    # the tiny model was made in Python, not from a GGUF: no tokenizer to copy, so the model stays on
    # transformers and the result says why; the training itself succeeded
    params = lab.params(max_steps=2, eval_every=2, save_every=2, name="fox-export")
    result = job.run(lab.context(params, job_id=1))
    assert "did not come from a GGUF file" in result["export"]["error"]
    assert lab.catalog.get("fox-export").data.get("gguf") is None

    def no_training(*args):
        raise AssertionError("a job resumed after its training finished must not train again")

    monkeypatch.setattr(job, "train_and_record", no_training)
    resumed = job.run(lab.context(params, job_id=1, resume=True))
    assert resumed["model"] == "fox-export" and "error" in resumed["export"]

    off = dataclasses.replace(lab.settings, export_gguf=False)   # LLMOS_EXPORT_GGUF=0
    ctx = lab.context(params, job_id=1, resume=True)
    ctx.settings = off
    assert "export" not in job.run(ctx)


class StopAt(JobContext):
    """Presses Stop once step `stop_step` is logged (what SIGTERM from the scheduler does); the run stops at
    the end of the next step, with a checkpoint there."""
    stop_step = 4

    def metric(self, step, **values):
        super().metric(step, **values)
        if step >= self.stop_step:
            self.cancel()


def test_stop_keeps_a_checkpoint_and_resume_continues_the_same_curve(lab):
    params = lab.params(name="straight")
    job.run(lab.context(params, job_id=1))
    straight = lab.losses(1)

    stopped_params = lab.params(name="stopped")
    result = job.run(lab.context(stopped_params, job_id=2, cls=StopAt))
    assert result["stopped"] and result["checkpoint"] == "checkpoint-5" and result["steps"] == 5
    assert (lab.settings.jobs_dir / "2" / "checkpoints" / "checkpoint-5" / CHECKPOINT_MARK).exists()
    with pytest.raises(ModelNotFound):
        lab.catalog.get("stopped")   # nothing registered from a stopped run

    resumed = job.run(lab.context(stopped_params, job_id=2, resume=True))
    assert not resumed.get("stopped") and resumed["resumed_from_step"] == 5 and resumed["steps"] == 8
    curve = lab.losses(2)
    assert sorted(curve) == list(range(1, 9))
    for step in range(1, 9):
        assert curve[step] == pytest.approx(straight[step], rel=1e-4), step
    assert resumed["before"] == json.loads((lab.settings.jobs_dir / "2" / "before.json").read_text())
    assert lab.catalog.get("stopped").source == "trained"


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_good_checkpoint(lab, monkeypatch):
    poisoned = {"on": False}
    original = trainer.load_model

    def load_poisoned(*args, **kwargs):
        model = original(*args, **kwargs)
        model.lm_head.register_forward_hook(lambda m, i, out: out * float("nan") if poisoned["on"] else out)
        return model

    class PoisonAfter(JobContext):
        def metric(self, step, **values):
            super().metric(step, **values)
            # After step 4's validation (which comes before its checkpoint): step 5 diverges.
            poisoned["on"] = poisoned["on"] or (step == 4 and "eval_loss" in values)

    monkeypatch.setattr(trainer, "load_model", load_poisoned)
    with pytest.raises(JobError, match="NaN at step 5") as info:
        job.run(lab.context(lab.params(), cls=PoisonAfter))
    assert "lower the learning rate" in info.value.hint and "checkpoint-4" in info.value.hint
    assert [p.name for p in complete_checkpoints(lab.settings.jobs_dir / "1" / "checkpoints")] == ["checkpoint-4"]
    with pytest.raises(ModelNotFound):
        lab.catalog.get("fox")


def test_disk_full_while_checkpointing_keeps_the_last_good_checkpoint(lab, monkeypatch):
    from transformers import Trainer

    original = Trainer._save_optimizer_and_scheduler

    def fill_disk(self, output_dir):
        if output_dir.endswith("checkpoint-8"):   # the model was written, the optimizer state is not
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", fill_disk)
    with pytest.raises(JobError, match="disk filled up .* checkpoint-4") as info:
        job.run(lab.context(lab.params()))
    assert "Resume" in info.value.hint
    checkpoints = lab.settings.jobs_dir / "1" / "checkpoints"
    assert not (checkpoints / "checkpoint-8").exists()          # the half-written one is gone
    good = checkpoints / "checkpoint-4"
    assert (good / CHECKPOINT_MARK).exists() and (good / "optimizer.pt").exists()


def test_the_estimate_counts_ray_train_workers(lab):
    """N workers: N replicas' memory (each on its node), the same steps' tokens split N ways, plus a cost
    per step for the gradients' all-reduce and the worker group's start."""
    params = lab.params(method="lora", max_steps=20)
    one = job.estimate(params, lab.settings)
    two = job.estimate({**params, "workers": 2}, lab.settings)
    assert two["worker_memory_bytes"] == one["memory_bytes"] and two["memory_bytes"] == 2 * one["memory_bytes"]
    assert two["world"] == 2 and two["time"]["tokens"] == 2 * one["time"]["tokens"]   # batch per worker
    facts = model_facts(lab.catalog.get("tiny-base"), lab.settings, lab.catalog)
    per_step = est.allreduce_seconds(est.lora_parameters(facts, 8), 2, "cpu")
    assert per_step > est.ALLREDUCE_LATENCY_S
    # twice the tokens on two workers: the compute (training and validations) splits two ways, and the
    # communication and the start are added
    speed = one["time"]["flops_per_s"]
    assert two["time"]["flops_per_s"] == pytest.approx(2 * speed)
    compute_one, compute_two = one["time"]["flops"] / speed, two["time"]["flops"] / (2 * speed)
    assert two["seconds"] == pytest.approx(one["seconds"] - compute_one + compute_two + 20 * per_step
                                           + est.WORKER_GROUP_START_S)
    assert "2 workers" in two["time"]["source"]


def test_rising_validation_loss_stops_early_and_registers_the_best_step(lab, tmp_path):
    # One prompt, two answers: the training rows say the fox, the held-out rows the German fox (which rows
    # are held out is the seeded shuffle of data.tokenize). The more it learns the one, the worse the other.
    rows, held_out = 20, 4
    order = list(range(rows))
    random.Random(42).shuffle(order)
    data = tmp_path / "two-answers.jsonl"
    data.write_text("".join(json.dumps({"prompt": "Say it:", "response": GERMAN if i in order[:held_out] else FOX})
                            + "\n" for i in range(rows)))
    params = lab.params(data=str(data), validation_fraction=held_out / rows, max_steps=40, eval_every=2,
                        patience=2, learning_rate=1e-2, name="best")
    result = job.run(lab.context(params))
    rows = lab.store.query("SELECT step, data FROM job_metrics WHERE job_id = 1")
    evals = {r["step"]: json.loads(r["data"])["eval_loss"] for r in rows if "eval_loss" in json.loads(r["data"])}
    best = min(evals, key=evals.get)
    assert result["stopped_early"] and result["steps"] < 40 and result["steps"] == max(evals)
    assert max(evals) - best == 2 * 2                        # patience: two validations without a lower loss
    assert result["best_step"] == best < result["steps"]
    assert result["best_eval_loss"] == pytest.approx(evals[best])
    # The registered weights are the best step's, not the last: the "after" validation measures them.
    assert result["after"]["loss"] == pytest.approx(evals[best], rel=1e-4)
    assert lab.catalog.get("best").source == "trained"
    from llmos_core.cli.train import summarize

    assert f"kept the best checkpoint, step {best}" in summarize({"id": 1, "state": "succeeded", "result": result})


def test_validate_refuses_before_queueing(lab, tmp_path, monkeypatch):
    with pytest.raises(ModelNotFound):
        lab.params(model="no-such-model")
    with pytest.raises(InvalidInput, match="does not exist"):
        lab.params(data=str(tmp_path / "missing.txt"))
    short = tmp_path / "short.txt"
    short.write_text("Too short.")
    with pytest.raises(InvalidInput, match="shorter than one block"):
        lab.params(data=str(short))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a"}\n{"text": \n')
    with pytest.raises(InvalidInput, match="line 2"):
        lab.params(data=str(bad))
    with pytest.raises(InvalidInput, match="learning rate 0"):
        lab.params(learning_rate=0)
    with pytest.raises(InvalidInput, match="2 workers needs a Ray cluster") as info:   # one machine: torchrun
        lab.params(workers=2)
    assert "LLMOS_CLUSTER" in info.value.hint
    # The data is copied under the data folder: the job does not depend on the user's file.
    clean = lab.params()
    assert clean["data"].startswith(str(lab.settings.home / "datasets"))
    # Full fine-tuning that cannot fit says so and suggests LoRA with its figure.
    monkeypatch.setattr(job, "free_memory", lambda device: (10**6, 10**6))
    with pytest.raises(InsufficientMemory, match="Full fine-tune .* needs") as info:
        lab.params()
    assert info.value.hint.startswith("use LoRA instead: it needs about")


def test_short_pairs_are_estimated_at_their_longest_row_not_the_block_length(lab, tmp_path):
    """A batch is padded to its longest row: 24 short question/answer pairs under a 128-token block need the
    activations of their own length (the embedded Gemma's first style run was estimated at 4.5 GB and
    peaked at 2.3 GB before this)."""
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"Question {i}?", "response": f"Answer {i}."}) + "\n"
                             for i in range(24)))
    short = job.estimate(lab.params(method="lora", data=str(pairs), block_size=128, name="pairs"), lab.settings)
    longest = short["plan"]["longest_block"]
    assert 0 < longest < 32
    facts = model_facts(lab.catalog.get("tiny-base"), lab.settings, lab.catalog)
    at_rows = est.memory_bytes(facts, "lora", "adamw", 4, longest, 8, weight_bytes=4, compute_bytes=4)
    at_block = est.memory_bytes(facts, "lora", "adamw", 4, 128, 8, weight_bytes=4, compute_bytes=4)
    assert short["memory_bytes"] == at_rows < at_block
    # packed text fills whole blocks: estimated at the block length
    text = job.estimate(lab.params(method="lora", block_size=32, name="text"), lab.settings)
    assert text["plan"]["longest_block"] == 32
