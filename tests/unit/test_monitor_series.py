"""The payloads the live chart gets: the layout and whole window once, then small increments."""
from __future__ import annotations

import json

from llmos_core import monitor_series

GB = 1024**3


def sample(ts: float, cpu: float = 10.0, job: bool = False, gpus: int = 1) -> dict:
    llmos = {"server": {"label": "LLM OS server", "cpu": 3.0, "rss": GB, "gpu_mem": 0}}
    if job:
        llmos["job 12"] = {"label": "training job 12 (LoRA on gemma)", "cpu": 150.0, "rss": 2 * GB, "gpu_mem": 0}
    return {"ts": ts, "cpu": {"total": cpu, "per_core": [cpu, cpu], "load": [0.1, 0.1, 0.1]},
            "mem": {"used": 4 * GB, "total": 16 * GB, "percent": 25.0, "swap_used": 0, "swap_total": 0},
            "io": {}, "gpus": [{"index": i, "name": f"Fake {i}", "util": 50, "mem_used": 20 * GB, "mem_total": 80 * GB}
                               for i in range(gpus)], "llmos": llmos}


def test_the_layout_names_every_chart_and_line():
    charts = monitor_series.layout([sample(1.0, job=True, gpus=2)])
    assert [c["id"] for c in charts] == ["cpu", "memory", "gpu0", "gpu1", "llmos"]
    assert [line["label"] for line in charts[0]["series"]] == ["total", "core 0", "core 1"]
    assert [line["label"] for line in charts[1]["series"]] == ["RAM used", "LLM OS server", "training job 12 (LoRA on gemma)"]
    assert charts[2]["title"] == "GPU 0: Fake 0" and charts[1]["y_max"] == 16.8


def test_the_window_then_increments_of_a_few_hundred_bytes():
    samples = [sample(float(t), cpu=t % 100) for t in range(300)]
    first = monitor_series.window_payload(samples, [{"ts": 5.0, "kind": "alert", "message": "RAM 95% in use"}],
                                          300, "e1")
    assert first["reset"] and len(first["ts"]) == 300 and first["values"]["cpu"][0][-1] == 99.0
    assert first["markers"] == [{"ts": 5.0, "kind": "alert", "text": "alert: RAM 95% in use", "alert": True}]
    step = monitor_series.increment_payload([sample(300.0, cpu=42.0)], [], first["charts"], "e1", max_points=2)
    assert not step["reset"] and "charts" not in step and step["ts"] == [300.0]
    assert step["values"]["cpu"][0] == [42.0] and step["values"]["gpu0"] == [[50], [25.0]]
    assert len(json.dumps(step)) < 500


def test_a_long_window_is_downsampled_with_its_spike():
    samples = [sample(float(t)) for t in range(10_000)]
    samples[4321]["cpu"]["total"] = 100.0
    payload = monitor_series.window_payload(samples, [], 7 * 86400, "e", max_points=1000)
    assert len(payload["ts"]) <= 1000 and max(payload["values"]["cpu"][0]) == 100.0


def test_a_new_job_needs_a_new_layout():
    charts = monitor_series.layout([sample(1.0)])
    assert monitor_series.fits([sample(2.0)], charts)
    assert not monitor_series.fits([sample(2.0, job=True)], charts)
    assert not monitor_series.fits([sample(2.0, gpus=2)], charts)
    assert monitor_series.fits([], charts)


def test_the_first_sample_without_per_core_figures_has_the_same_layout():
    first = sample(1.0)
    first["cpu"] = {"total": None, "per_core": None, "load": None, "cores": 2}   # psutil's first reading
    assert monitor_series.layout([first]) == monitor_series.layout([sample(2.0)])
