"""Downsampling for the charts: min/max per bucket keeps a spike that averaging would flatten."""
from __future__ import annotations

import pytest

from llmos_core.downsample import minmax_buckets
from llmos_core.monitor import average


def test_a_short_series_passes_through_unchanged():
    ts, cols = minmax_buckets([1.0, 2.0, 3.0], {"a": [1, None, 3]}, max_points=10)
    assert ts == [1.0, 2.0, 3.0] and cols == {"a": [1, None, 3]}


def test_a_one_minute_spike_in_a_week_of_minutes_survives():
    week = 7 * 24 * 60                            # one stored row a minute, as monitor_samples keeps a week
    ts = [float(60 * i) for i in range(week)]
    cpu = [10.0] * week
    cpu[7777] = 100.0                             # one busy minute, mid-week
    out_ts, out = minmax_buckets(ts, {"cpu": cpu}, max_points=2000)
    assert len(out_ts) <= 2000 and len(out["cpu"]) == len(out_ts)
    assert max(out["cpu"]) == 100.0 and min(out["cpu"]) == 10.0
    assert out_ts == sorted(out_ts) and out_ts[0] == 0.0 and out_ts[-1] == ts[-1]
    # What averaging to the same number of points would have drawn: the spike at a fraction of its height.
    step = week // 1000 + 1
    averaged = [average([{"v": v} for v in cpu[i:i + step]])["v"] for i in range(0, week, step)]
    assert max(averaged) < 25.0


def test_every_series_keeps_its_own_extremes_in_time_order():
    ts = [float(i) for i in range(8)]
    up = [0, 1, 2, 9, 3, 4, 5, 6]
    down = [5, None, 1, 4, None, None, None, None]
    out_ts, out = minmax_buckets(ts, {"up": up, "down": down}, max_points=4)   # two buckets of four
    assert out_ts == [0.0, 3.0, 4.0, 7.0]
    assert out["up"] == [0, 9, 3, 6]
    assert out["down"] == [5, 1, None, None]     # min came after max in the first bucket; none in the second


def test_columns_of_another_length_are_refused():
    with pytest.raises(ValueError):
        minmax_buckets([1.0, 2.0], {"a": [1]}, max_points=1)
