"""Is the tuned model better at my task? The evaluation as the CLI (`python -m llmos_core evaluate`) and the
Train page run it, and "Promote": make a model the user's default for its task.

After a training run the page evaluates its result against the model it started from, on prompts held out
of the run's own data (evaluation/data.py splits them off the way training split its validation part),
unless the user gives a held-out file. The report is kept beside the job's log, so it survives a refresh.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..accounts import User
from ..errors import InvalidInput, LLMOSError
from ..evaluation import EvaluationReport, Rule, evaluate_models, heldout_from_data, read_heldout
from ..evaluation.data import HELDOUT_FRACTION, HELDOUT_SEED
from ..evaluation.run import MAX_NEW_TOKENS, Progress
from ..feedback.pairs import MAX_FILE_BYTES
from ..models.catalog import CAUSAL_LM
from ..models.defaults import FALLBACK, ModelDefaults

MAX_UPLOAD_MB = MAX_FILE_BYTES // 1024**2   # a held-out file is read up to this (evaluation/data.py)


def make_rule(regex: str | None = None, phrase: str | None = None) -> Rule | None:
    regex, phrase = (regex or None), (phrase or None)
    if regex is None and phrase is None:
        return None
    return Rule(regex=regex, phrase=phrase)


def evaluate(engine, actor: User, tuned: str, base: str, *, data: str | Path | None = None,
             split_from: str | Path | None = None, metrics=("rule",), rule: Rule | None = None,
             judge: str | None = None, max_new_tokens: int = MAX_NEW_TOKENS, resamples: int = 1000, seed: int = 0,
             fraction: float = HELDOUT_FRACTION, split_seed: int = HELDOUT_SEED, parallel: int = 1,
             progress: Progress | None = None) -> EvaluationReport:
    """Held-out rows from `data` (a JSONL of prompt/reference) or split off `split_from` (training data)."""
    if (data is None) == (split_from is None):
        raise InvalidInput("give the held-out prompts or the training data to split them from", "--data HELD_OUT.jsonl")
    rows = read_heldout(data) if data is not None else \
        heldout_from_data(split_from, fraction, split_seed, tokenizer_loader=lambda: _tokenizer_of(engine, actor, base))
    return evaluate_models(engine, actor, tuned, base, rows, metrics, rule=rule, judge=judge,
                           max_new_tokens=max_new_tokens, resamples=resamples, seed=seed, parallel=parallel,
                           progress=progress)


def _tokenizer_of(engine, actor: User, model: str):
    """The tokenizer a run from `model` renders prompts with (a preference run holds out prompts by their
    rendered text, so the split is made the same way); its folder exists once a run has started from it."""
    from ..training.model import base_folder, load_tokenizer
    engine.catalog.check_visible(actor, model)
    return load_tokenizer(base_folder(engine.catalog.get(model), engine.settings, engine.catalog))


# ---------------------------------------------------------------- after a training run

def run_models(engine, actor: User, job_id: int) -> tuple[str, str, dict]:
    """(tuned, base, params) of a finished training run the actor may see."""
    job = engine.scheduler.for_user(actor).get(job_id)   # someone else's job reads as missing
    tuned = (job.get("result") or {}).get("model")
    if job["state"] != "succeeded" or not tuned:
        raise InvalidInput(f"job {job_id} has no trained model to evaluate", "wait for the run to finish")
    return tuned, job["params"]["model"], job["params"]


def evaluate_run(engine, actor: User, job_id: int, *, heldout: str | Path | None = None, metrics=("rule",),
                 rule: Rule | None = None, judge: str | None = None, max_new_tokens: int = MAX_NEW_TOKENS,
                 progress: Progress | None = None) -> EvaluationReport:
    """The run's result against its starting model; held out from its own data unless `heldout` is given.
    The report is kept (`saved_evaluation`)."""
    tuned, base, params = run_models(engine, actor, job_id)
    report = evaluate(engine, actor, tuned, base, data=heldout, split_from=None if heldout else params["data"],
                      metrics=metrics, rule=rule, judge=judge, max_new_tokens=max_new_tokens,
                      fraction=params.get("validation_fraction", HELDOUT_FRACTION) or HELDOUT_FRACTION,
                      split_seed=params.get("seed", HELDOUT_SEED), progress=progress)
    path = _report_path(engine, job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_dict(), indent=2))
    return report


def saved_evaluation(engine, actor: User, job_id: int) -> dict | None:
    """The last evaluation of that run (as EvaluationReport.to_dict), if one was made."""
    engine.scheduler.for_user(actor).get(job_id)
    path = _report_path(engine, job_id)
    return json.loads(path.read_text()) if path.exists() else None


def _report_path(engine, job_id: int) -> Path:
    return Path(engine.settings.jobs_dir) / str(int(job_id)) / "evaluation.json"


# ---------------------------------------------------------------- Promote

def promote(engine, actor: User, model: str) -> str:
    """Make `model` the actor's default for its task (Chat opens with it). Returns the task."""
    engine.catalog.check_visible(actor, model)
    task = engine.catalog.get(model).task
    ModelDefaults(engine.store).set(actor, task, model)
    engine.store.add_event("promote", model, f"{actor.name} made {model} their default {task} model")
    return task


def default_model(engine, actor: User, task: str = CAUSAL_LM, choices: list[str] | None = None) -> str | None:
    """The actor's promoted model for `task` when it still exists for them (and is among `choices`, when
    given), else the embedded default."""
    promoted = ModelDefaults(engine.store).get(actor, task)
    if promoted and (choices is None or promoted in choices):
        try:
            engine.catalog.check_visible(actor, promoted)
            engine.catalog.get(promoted)
            return promoted
        except LLMOSError:   # removed since, or no longer visible to them
            pass
    return FALLBACK.get(task)
