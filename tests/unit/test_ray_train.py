"""Ray Train's driver side that needs no cluster: a run the whole cluster cannot hold is refused with
figures, not left waiting (the real 2-worker run is tests/cluster/test_cluster_train.py)."""
from __future__ import annotations

import pytest

from llmos_core.errors import JobError
from llmos_core.training.ray_train import check_room


def test_workers_the_cluster_cannot_hold_are_refused_with_figures():
    totals = {"CPU": 2.0, "memory": 4e9, "GPU": 0.0}
    check_room(totals, 2, {"CPU": 1.0, "memory": 1.5e9})   # fits
    with pytest.raises(JobError, match="has 2 CPUs for 3 workers of 1") as refused:
        check_room(totals, 3, {"CPU": 1.0, "memory": 1e9})
    assert "fewer workers" in refused.value.hint
    with pytest.raises(JobError, match="4.0 GB of memory for 2 workers of 2.5 GB"):
        check_room(totals, 2, {"CPU": 1.0, "memory": 2.5e9})
