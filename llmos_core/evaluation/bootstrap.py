"""Paired bootstrap: how sure the difference between two models' mean scores is, and the verdict from it.

Both models answer the same prompts, so scores come in pairs (tuned_i, base_i). A resample draws n row
indices with replacement (the same rows for both models) and takes the mean of each and of their
difference; 1000 resamples, seeded, give percentile intervals (95 %: the 2.5th and 97.5th).

The verdict on one metric: "better" when the whole interval of the difference lies on the good side of 0
(above 0; below 0 for a lower-is-better metric such as perplexity), "worse" when it lies wholly on the bad
side, "same" when it holds 0 (no difference shown at this confidence, which is not proof of equality).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInput

BETTER, SAME, WORSE = "better", "same", "worse"
RESAMPLES, CONFIDENCE, SEED = 1000, 0.95, 0
MAX_RESAMPLES, MAX_DRAWS = 100_000, 20_000_000   # 20 M int64 indices: 160 MB at most


@dataclass
class Interval:
    mean: float
    low: float
    high: float

    def to_dict(self) -> dict:
        return {"mean": self.mean, "low": self.low, "high": self.high}


@dataclass
class PairedResult:
    tuned: Interval
    base: Interval
    difference: Interval     # tuned minus base


def paired_bootstrap(tuned: list[float], base: list[float], resamples: int = RESAMPLES,
                     confidence: float = CONFIDENCE, seed: int = SEED) -> PairedResult:
    """Means of `tuned`, `base` and of their difference, each with a percentile interval."""
    a, b = np.asarray(tuned, dtype=float), np.asarray(base, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise InvalidInput(f"paired scores need two equal, non-empty lists (got {len(a)} and {len(b)})")
    if not 0 < confidence < 1 or not 1 <= resamples <= MAX_RESAMPLES:
        raise InvalidInput(f"confidence must be in (0, 1) and resamples from 1 to {MAX_RESAMPLES:,}")
    if resamples * len(a) > MAX_DRAWS:   # the (resamples, n) index array is held at once
        raise InvalidInput(f"{resamples:,} resamples of {len(a):,} rows is too many draws",
                           f"keep resamples x rows under {MAX_DRAWS:,}: 1000 resamples is the usual")
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(a), size=(resamples, len(a)))   # (resamples, n): the same rows for both
    tails = [100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2]

    def interval(values: np.ndarray) -> Interval:
        low, high = np.percentile(values[index].mean(axis=1), tails)
        return Interval(float(values.mean()), float(low), float(high))

    return PairedResult(interval(a), interval(b), interval(a - b))


def verdict(difference: Interval, lower_is_better: bool = False) -> str:
    """better / same / worse from the interval of (tuned - base); see the module's docstring."""
    low, high = (-difference.high, -difference.low) if lower_is_better else (difference.low, difference.high)
    if low > 0:
        return BETTER
    if high < 0:
        return WORSE
    return SAME
