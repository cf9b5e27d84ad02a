"""Per-row task metrics: each scores one reply (against its reference where it needs one) as a number.

    exact       1 when the reply equals the reference after SQuAD's normalization (lower case, no
                punctuation, no articles a/an/the, single spaces), else 0
    f1          SQuAD's token F1 between the normalized reply and reference (0..1)
    chrf        sacrebleu's sentence chrF (0..100): character n-gram F-score, for translation
    rule        1 when the user's rule holds (a regex found in the reply, or a required phrase in it), else 0
    perplexity  of the reference given the prompt, under the model (lower is better; run.py computes it)
    judge       pairwise preference by a judge model (run.py): 1 tuned better, 0 base better, 0.5 a tie

Means of these, per model, are what the report compares (bootstrap.py).
"""
from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass

import regex   # the `regex` package (a transformers dependency): search with a timeout

from ..errors import InvalidInput

EXACT, F1, CHRF, RULE, PERPLEXITY, JUDGE = "exact", "f1", "chrf", "rule", "perplexity", "judge"
METRICS = (EXACT, F1, CHRF, RULE, PERPLEXITY, JUDGE)
NEEDS_REFERENCE = (EXACT, F1, CHRF, PERPLEXITY)
LOWER_IS_BETTER = (PERPLEXITY,)
MAX_RULE_CHARS = 500
RULE_TIMEOUT_S = 0.5   # a regex that backtracks for longer on one reply is refused, not waited on

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize(text: str) -> str:
    """SQuAD's answer normalization."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


def exact_match(reply: str, reference: str) -> float:
    return float(normalize(reply) == normalize(reference))


def token_f1(reply: str, reference: str) -> float:
    got, want = normalize(reply).split(), normalize(reference).split()
    if not got or not want:
        return float(got == want)
    common = sum((Counter(got) & Counter(want)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


def chrf(reply: str, reference: str) -> float:
    from sacrebleu.metrics import CHRF
    return float(CHRF().sentence_score(reply, [reference]).score)


@dataclass(frozen=True)
class Rule:
    """What a reply must do: match `regex` (searched anywhere) or contain `phrase` (case-insensitive)."""
    regex: str | None = None
    phrase: str | None = None

    def __post_init__(self) -> None:
        if (self.regex is None) == (self.phrase is None):
            raise InvalidInput("a rule is one regex or one phrase", "give --rule-regex R or --rule-phrase P")
        text = self.regex if self.regex is not None else self.phrase
        if not text.strip() or len(text) > MAX_RULE_CHARS:
            raise InvalidInput(f"the rule must be 1 to {MAX_RULE_CHARS} characters", "write a shorter rule")
        if self.regex is not None:
            try:
                regex.compile(self.regex)
            except regex.error as exc:
                raise InvalidInput(f"the rule's regex does not compile: {exc}", "fix the regular expression") from exc

    def describe(self) -> str:
        return f"matches /{self.regex}/" if self.regex is not None else f"contains “{self.phrase}”"

    def holds(self, reply: str) -> float:
        if self.phrase is not None:
            return float(self.phrase.casefold() in reply.casefold())
        try:
            return float(regex.search(self.regex, reply, timeout=RULE_TIMEOUT_S) is not None)
        except TimeoutError as exc:
            raise InvalidInput(f"the rule's regex ran over {RULE_TIMEOUT_S} s on one reply",
                               "simplify it (overlapping repeats such as (a|aa)+ backtrack without end)") from exc


def score(metric: str, reply: str, reference: str | None, rule: Rule | None = None) -> float:
    """One reply's score under a text metric (not perplexity or judge: those need a model)."""
    if metric == RULE:
        if rule is None:
            raise InvalidInput("the rule metric needs a rule", "give --rule-regex R or --rule-phrase P")
        return rule.holds(reply)
    if reference is None:
        raise InvalidInput(f"the {metric} metric needs a reference for every prompt",
                           'add "reference" to each line of the held-out file')
    if metric == EXACT:
        return exact_match(reply, reference)
    if metric == F1:
        return token_f1(reply, reference)
    if metric == CHRF:
        return chrf(reply, reference)
    raise InvalidInput(f"{metric} is not a text metric")


def check_metrics(metrics: list[str], rule: Rule | None, judge: str | None, has_references: bool) -> list[str]:
    """The metrics asked for, checked against what they need; InvalidInput naming what is missing."""
    metrics = list(dict.fromkeys(m.strip().lower() for m in metrics if m and m.strip()))
    if not metrics:
        raise InvalidInput("no metric given", "choose from " + ", ".join(METRICS))
    for metric in metrics:
        if metric not in METRICS:
            raise InvalidInput(f"unknown metric {metric!r}", "choose from " + ", ".join(METRICS))
        if metric == RULE and rule is None:
            raise InvalidInput("the rule metric needs a rule", "give --rule-regex R or --rule-phrase P")
        if metric == JUDGE and not judge:
            raise InvalidInput("the judge metric needs a judge model", "give --judge MODEL")
        if metric in NEEDS_REFERENCE and not has_references:
            raise InvalidInput(f"the {metric} metric needs a reference for every prompt",
                               'add "reference" to each line of the held-out file, or use --metric rule / judge')
    return metrics
