"""Evaluation on the user's own task: is the tuned model better than the base on held-out prompts?
metrics.py scores replies, bootstrap.py gives intervals and the verdict, data.py reads or splits off the
held-out prompts, run.py runs both models and puts it together."""
from .bootstrap import BETTER, SAME, WORSE, Interval, paired_bootstrap, verdict
from .data import HeldOutRow, heldout_from_data, read_heldout, split_indices, write_heldout
from .metrics import METRICS, Rule
from .run import EvaluationReport, MetricResult, evaluate_models

__all__ = ["BETTER", "METRICS", "SAME", "WORSE", "EvaluationReport", "HeldOutRow", "Interval", "MetricResult", "Rule",
           "evaluate_models", "heldout_from_data", "paired_bootstrap", "read_heldout", "split_indices", "verdict",
           "write_heldout"]
