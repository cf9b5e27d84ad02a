"""Which chat model words Ask's answers by default: one function for the Ask page and the `ask` command.

Chosen by measurement, not by size (bench/quality.py --part ask, on the evaluation set in
tests/data/qa/: 36 answerable and 8 unanswerable questions over five documents). The quotes carry the
answer; what the model adds is its wording, shown only when every number, time and name in it is in the
quotes. So the model that serves best is the one whose wording passes that check most often, then the
faster one. A causal LM the user added is unmeasured and ranked below the measured ones.
"""
from __future__ import annotations

# bench/quality.py --part ask, both in one run (docs/figures/h28a.md): answerable questions, of 36, whose
# wording passed the check and was shown, and the median seconds per question on this machine. Both
# answered 34 of 36 correctly and declined 8 of 8 (the quotes do that); SmolLM2's wording passed as often
# and it took half the time, so it words Ask's answers by default.
MEASURED = {
    "smollm2-135m-instruct": {"wording_shown": 19, "median_s": 5.67},
    "gemma-3-270m": {"wording_shown": 18, "median_s": 11.95},
}
UNMEASURED = {"wording_shown": -1, "median_s": float("inf")}


def ranking_key(name: str) -> tuple:
    figures = MEASURED.get(name, UNMEASURED)
    shown = figures["wording_shown"] if figures["wording_shown"] is not None else -1
    seconds = figures["median_s"] if figures["median_s"] is not None else float("inf")
    return (-shown, seconds)


def default_ask_model(catalog) -> str:
    """The catalog's chat model measured best for Ask (the catalog's order breaks ties)."""
    from ..errors import ModelNotFound
    from ..models.catalog import CAUSAL_LM

    causal = catalog.names(CAUSAL_LM)
    if not causal:
        raise ModelNotFound("the catalog holds no chat model to word the answer",
                            "add a causal LM on the Models page, or pull one with `models pull`")
    return min(causal, key=lambda name: (ranking_key(name), causal.index(name)))
