"""`evaluate`: is the tuned model better than the base at my task, on held-out prompts?

    python -m llmos_core evaluate --model TUNED --against BASE --data HELD_OUT.jsonl \
        [--metric exact|f1|chrf|rule|perplexity|judge ...] [--rule-regex R | --rule-phrase P] [--judge MODEL] [--json]

Both models answer every prompt greedily; each metric's mean is given for both with a 95 % paired bootstrap
interval, and the difference with its interval. The verdict (better / same / worse) is the first metric's:
better when the whole interval of the difference is on the good side of 0 (evaluation/bootstrap.py).
"""
from __future__ import annotations

from ..engine import Engine
from ..evaluation import METRICS
from ..evaluation.run import MAX_NEW_TOKENS
from ..settings import Settings
from ..usecases import evaluate as evaluation
from . import acting_user, print_json


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="compare a tuned model with its base on held-out prompts, with "
                                               "confidence intervals and a verdict")
    p.add_argument("--model", required=True, help="the tuned model (catalog name)")
    p.add_argument("--against", required=True, help="the model to beat, usually the one it was tuned from")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help='held-out JSONL: {"prompt": ..., "reference": ...} a line')
    source.add_argument("--split-from", help="training data to split the held-out prompts from, as training does")
    p.add_argument("--metric", action="append", choices=METRICS, dest="metrics",
                   help="repeat for several; the first decides the verdict (default: rule when a rule is given, "
                        "else f1)")
    rule = p.add_mutually_exclusive_group()
    rule.add_argument("--rule-regex", help="the rule metric: this regular expression is found in the reply")
    rule.add_argument("--rule-phrase", help="the rule metric: the reply contains this phrase (any case)")
    p.add_argument("--judge", help="a model that says which of two replies is better (the judge metric)")
    p.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS)
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="the bootstrap's seed")
    p.add_argument("--parallel", type=int, default=1, help="replies in flight per model (default 1: reproducible; "
                                                           "more is faster, but batching changes greedy replies)")
    p.add_argument("--json", action="store_true", help="print the metrics with their intervals and the verdict")
    p.set_defaults(func=run)


def run(args) -> int:
    rule = evaluation.make_rule(args.rule_regex, args.rule_phrase)
    metrics = args.metrics or (["rule"] if rule else ["f1"])
    engine = Engine(Settings.from_env(), primary=False, start_threads=False)
    try:
        report = evaluation.evaluate(engine, acting_user(args, engine.store), args.model, args.against,
                                     data=args.data, split_from=args.split_from, metrics=metrics, rule=rule,
                                     judge=args.judge, max_new_tokens=args.max_new_tokens,
                                     resamples=args.resamples, seed=args.seed, parallel=args.parallel)
    finally:
        engine.close()
    if args.json:
        print_json(report.to_dict())
        return 0
    print(f"{report.rows} held-out prompts; {args.model} (tuned) against {args.against} (base)"
          + (f"; rule: {report.rule}" if report.rule else ""))
    for m in report.metrics:
        direction = "lower is better" if m.lower_is_better else "higher is better"
        print(f"  {m.name:<10} tuned {m.tuned.mean:.4g} [{m.tuned.low:.4g}, {m.tuned.high:.4g}]  "
              f"base {m.base.mean:.4g} [{m.base.low:.4g}, {m.base.high:.4g}]  "
              f"difference {m.difference.mean:+.4g} [{m.difference.low:+.4g}, {m.difference.high:+.4g}]  "
              f"{m.verdict} ({direction})")
    print(f"verdict ({report.primary}, 95% paired bootstrap): {report.verdict}")
    return 0
