"""Run an evaluation: both models answer every held-out prompt (greedy, through the engine's generation
service, as the acting user), each metric scores the replies, and a paired bootstrap says how sure the
difference is (bootstrap.py). The first metric named is the primary one: its verdict is the report's.

    report = evaluate_models(engine, actor, "my-tune", "smollm2-135m-instruct", rows,
                             metrics=["rule"], rule=Rule(phrase="Cheers"))
    report.verdict        # "better" | "same" | "worse"
    report.to_dict()      # what `evaluate --json` prints
"""
from __future__ import annotations

import math
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from ..accounts import User
from ..errors import InvalidInput
from ..generation import SamplingParams
from . import metrics as M
from .bootstrap import RESAMPLES, Interval, paired_bootstrap, verdict
from .data import HeldOutRow

MAX_NEW_TOKENS = 128
# Requests in flight per model. 1 by default: batched decoding changes greedy replies in places (the logits'
# last digits differ with the batch's make-up, bench/evaluation.py), and a verdict should not depend on
# timing. More is faster (4: 1.5-2x on the embedded models here, docs/figures/h32a.md) but not reproducible.
PARALLEL = 1
JUDGE_PROMPT = ("Which answer to the question is better: more correct, more helpful and following any "
                "instruction in it? Reply with the single letter A or B.\n\nQuestion:\n{question}\n\n"
                "Answer A:\n{a}\n\nAnswer B:\n{b}\n\nThe better answer is")
Progress = Callable[[str, float], None]


@dataclass
class MetricResult:
    name: str
    tuned: Interval
    base: Interval
    difference: Interval
    verdict: str
    lower_is_better: bool = False

    def to_dict(self) -> dict:
        return {"tuned": self.tuned.to_dict(), "base": self.base.to_dict(), "difference": self.difference.to_dict(),
                "verdict": self.verdict, "lower_is_better": self.lower_is_better}


@dataclass
class EvaluationReport:
    tuned: str
    base: str
    rows: int
    metrics: list[MetricResult]
    primary: str
    verdict: str                    # the primary metric's: better | same | worse
    rule: str | None = None         # the rule, described, when one was given
    judge: str | None = None
    seconds: float = 0.0
    samples: list[dict] = field(default_factory=list)   # the first prompts with both replies, to read

    def metric(self, name: str) -> MetricResult:
        return next(m for m in self.metrics if m.name == name)

    def to_dict(self) -> dict:
        return {"tuned": self.tuned, "base": self.base, "rows": self.rows, "primary": self.primary,
                "verdict": self.verdict, "metrics": {m.name: m.to_dict() for m in self.metrics},
                "rule": self.rule, "judge": self.judge, "resamples": RESAMPLES, "confidence": 0.95,
                "seconds": round(self.seconds, 1), "samples": self.samples}

    def summary(self) -> str:
        """One line a person reads: the primary metric for both, the difference and its interval, the verdict."""
        m = self.metric(self.primary)
        return (f"{self.primary}: {self.tuned} {m.tuned.mean:.3g} vs {self.base} {m.base.mean:.3g}, difference "
                f"{m.difference.mean:+.3g} (95% interval {m.difference.low:+.3g} to {m.difference.high:+.3g}, "
                f"{self.rows} prompts): {self.verdict}")


def evaluate_models(engine, actor: User, tuned: str, base: str, rows: list[HeldOutRow], metrics=(M.RULE,), *,
                    rule: M.Rule | None = None, judge: str | None = None, max_new_tokens: int = MAX_NEW_TOKENS,
                    resamples: int = RESAMPLES, seed: int = 0, parallel: int = PARALLEL,
                    progress: Progress | None = None) -> EvaluationReport:
    """Greedy replies of `tuned` and `base` to every row, scored by `metrics` (the first is primary)."""
    started = time.perf_counter()
    if not rows:
        raise InvalidInput("no held-out prompts to evaluate on", "give a held-out JSONL with some prompts")
    if tuned == base:
        raise InvalidInput("the tuned model and the base model are the same", "compare two different models")
    names = M.check_metrics(list(metrics), rule, judge, all(r.reference is not None for r in rows))
    for name in (tuned, base) + ((judge,) if judge else ()):
        engine.catalog.check_visible(actor, name)     # someone else's unpublished model reads as missing
        engine.catalog.get(name)
    progress = progress or (lambda message, fraction: None)
    params = SamplingParams(do_sample=False, max_new_tokens=max_new_tokens)
    replies = {}
    for step, model in enumerate((tuned, base)):
        progress(f"{model} answers {len(rows)} prompts", step / 3)
        replies[model] = generate_all(engine, actor, model, [r.prompt for r in rows], params, parallel)
    scores: dict[str, tuple[list[float], list[float]]] = {}
    for name in names:
        progress(f"scoring {name}", 2 / 3)
        if name == M.PERPLEXITY:
            scores[name] = (perplexities(engine, tuned, rows), perplexities(engine, base, rows))
        elif name == M.JUDGE:
            wins = judge_wins(engine, actor, judge, rows, replies[tuned], replies[base], parallel)
            scores[name] = (wins, [1.0 - w for w in wins])
        else:
            scores[name] = ([M.score(name, reply, r.reference, rule) for reply, r in zip(replies[tuned], rows)],
                            [M.score(name, reply, r.reference, rule) for reply, r in zip(replies[base], rows)])
    results = []
    for name in names:
        paired = paired_bootstrap(*scores[name], resamples=resamples, seed=seed)
        lower = name in M.LOWER_IS_BETTER
        results.append(MetricResult(name, paired.tuned, paired.base, paired.difference,
                                    verdict(paired.difference, lower), lower))
    samples = [{"prompt": r.prompt[-1]["content"], "reference": r.reference, "tuned": t, "base": b}
               for r, t, b in list(zip(rows, replies[tuned], replies[base]))[:5]]
    progress("done", 1.0)
    return EvaluationReport(tuned, base, len(rows), results, names[0], results[0].verdict,
                            rule.describe() if rule else None, judge, time.perf_counter() - started, samples)


def generate_all(engine, actor: User, model: str, prompts: list[list[dict]], params: SamplingParams,
                 parallel: int = PARALLEL) -> list[str]:
    """Replies in prompt order, `parallel` in flight at once (the service batches them)."""
    def one(messages: list[dict]) -> str:
        return engine.chat.generate(model, messages, params, user=actor).text.strip()
    if not 1 <= parallel <= 16:
        raise InvalidInput(f"parallel must be from 1 to 16, got {parallel}")
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        return list(pool.map(one, prompts))


def perplexities(engine, model: str, rows: list[HeldOutRow]) -> list[float]:
    """Per row: the perplexity of the reference given the prompt (the prompt as Chat renders it, not scored)."""
    import torch

    from ..training.data import render_prompt
    with engine.models.use(model, "transformers") as resident:
        tokenizer, net = resident.tokenizer, resident.model
        out = []
        for row in rows:
            prompt = render_prompt(tokenizer, row.prompt)
            templated = bool(getattr(tokenizer, "chat_template", None))
            prompt_ids = tokenizer(prompt, add_special_tokens=not templated)["input_ids"]
            answer_ids = tokenizer(" " + row.reference.strip() if not templated else row.reference,
                                   add_special_tokens=False)["input_ids"]
            if not answer_ids:
                raise InvalidInput("a reference has no tokens", "give every prompt a non-empty reference")
            ids = torch.tensor([prompt_ids + answer_ids], device=net.device)
            labels = ids.clone()
            labels[0, :len(prompt_ids)] = -100
            with torch.inference_mode():
                loss = float(net(input_ids=ids, labels=labels).loss)
            out.append(math.exp(min(loss, 50.0)))
    return out


def judge_wins(engine, actor: User, judge: str, rows: list[HeldOutRow], tuned: list[str], base: list[str],
               parallel: int = PARALLEL) -> list[float]:
    """Per row, the tuned reply's share of two verdicts by the judge, asked with the answers in both orders
    (a judge that favours the first position cancels out): 1, 0.5 or 0; an unreadable verdict counts 0.5."""
    params = SamplingParams(do_sample=False, max_new_tokens=4)
    questions = [r.prompt[-1]["content"] for r in rows]
    first = [[{"role": "user", "content": JUDGE_PROMPT.format(question=q, a=t, b=b)}] for q, t, b in zip(questions, tuned, base)]
    second = [[{"role": "user", "content": JUDGE_PROMPT.format(question=q, a=b, b=t)}] for q, t, b in zip(questions, tuned, base)]
    a_first = generate_all(engine, actor, judge, first, params, parallel)
    a_second = generate_all(engine, actor, judge, second, params, parallel)
    return [(_letter_score(x, "A") + _letter_score(y, "B")) / 2 for x, y in zip(a_first, a_second)]


def _letter_score(verdict_text: str, tuned_letter: str) -> float:
    found = re.search(r"\b([AB])\b", verdict_text)
    return 0.5 if found is None else float(found.group(1) == tuned_letter)
