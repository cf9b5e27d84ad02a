"""Downsampling time series for charts: min and max per bucket, so a spike survives a week-long window.

A chart of a week at one row a minute holds 10,080 points per series; the browser needs about a
thousand. Averaging neighbours (what `average` below does for storage) flattens a one-minute spike
into its bucket; keeping each bucket's lowest and highest value keeps the spike at full height.

Every series of a chart shares one time axis (uPlot draws "aligned" data), so each bucket becomes two
timestamps, its first and its last; each series puts its extremes there in the order they happened.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

Number = float | int | None


def minmax_buckets(ts: Sequence[float], columns: dict[str, Sequence[Number]], max_points: int,
                   ) -> tuple[list[float], dict[str, list[Number]]]:
    """At most `max_points` timestamps (two per bucket) and, per series, each bucket's min and max.

    `ts` is sorted, oldest first; each column has one value per timestamp (None where there is none).
    A series with no value in a bucket gets None at both of its timestamps.
    """
    n = len(ts)
    if any(len(values) != n for values in columns.values()):
        raise ValueError("every column needs one value per timestamp")
    if n <= max_points or max_points < 2:
        return list(ts), {name: list(values) for name, values in columns.items()}
    buckets = max_points // 2
    size = math.ceil(n / buckets)
    out_ts: list[float] = []
    out: dict[str, list[Number]] = {name: [] for name in columns}
    for start in range(0, n, size):
        end = min(start + size, n)
        out_ts.append(ts[start])
        if end - start > 1:
            out_ts.append(ts[end - 1])
        for name, values in columns.items():
            out[name].extend(_extremes(values, start, end))
    return out_ts, out


def _extremes(values: Sequence[Number], start: int, end: int) -> list[Number]:
    """The bucket's min and max in the order they occurred (one value for a bucket of one sample)."""
    if end - start == 1:
        return [values[start]]
    low = high = None
    for i in range(start, end):
        v = values[i]
        if v is None:
            continue
        if low is None or v < values[low]:
            low = i
        if high is None or v > values[high]:
            high = i
    if low is None:
        return [None, None]
    first, second = sorted((low, high))
    return [values[first], values[second]]


def average(samples: list[dict]) -> dict:
    """The mean of compact samples, leaf by leaf (None where every value is None); shape from the last sample."""
    return _mean(samples)


def _mean(values: list) -> Any:
    last = values[-1]
    if isinstance(last, dict):
        return {k: _mean([v.get(k) if isinstance(v, dict) else None for v in values]) for k in last}
    if isinstance(last, list):
        same = [v for v in values if isinstance(v, list) and len(v) == len(last)]
        return [_mean([v[i] for v in same]) for i in range(len(last))]
    if isinstance(last, bool) or not isinstance(last, (int, float)):
        return last   # names, uuids: the latest
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return sum(numbers) / len(numbers) if numbers else None
