"""The monitor's samples as the browser charts want them: one shared time axis, one column per line.

`layout(samples)` says which charts and lines there are (CPU, memory, one per GPU, LLM OS parts);
`columns(samples, layout)` gives each line's values, rounded, aligned on the samples' timestamps;
`window_payload` and `increment_payload` wrap them for the live chart component: the whole window
once (downsampled min/max so spikes survive), then only the samples that came after; `feed_payload`
is the content of the live feed file (monitor_feed.py) the charts fetch by themselves.
Pure functions of compact samples (monitor.Sampler.history); nothing here reads the machine.
"""
from __future__ import annotations

from typing import Any

from .downsample import minmax_buckets

GB = 1024**3
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
MAX_CORE_LINES = 16          # more cores than this: the total alone (many thin lines say nothing)
MAX_POINTS = 2000            # per series and window, after downsampling


def layout(samples: list[dict], only: tuple[str, ...] | None = None) -> list[dict]:
    """The charts and their lines for these samples: [{"id", "title", "unit", "y_max", "series": [...]}].
    `only` keeps the charts of those ids (Home shows the CPU alone)."""
    # The core count too: the first sample has no per-core figures yet, and the layout must not change after it.
    cores = max((max(len(s["cpu"].get("per_core") or []), int(s["cpu"].get("cores") or 0)) for s in samples), default=0)
    cpu = [_line("total", "", width=2.5)]   # "": the theme's text colour (black on light, white on dark)
    if cores <= MAX_CORE_LINES:
        cpu += [_line(f"core {i}", COLORS[i % len(COLORS)], width=1) for i in range(cores)]
    charts = [{"id": "cpu", "title": "CPU", "unit": "%", "y_max": 105, "series": cpu}]

    total_gb = max((s["mem"].get("total") or 0 for s in samples), default=0) / GB
    memory = [_line("RAM used", "#1f77b4", fill=True)]
    if any(s["mem"].get("swap_total") for s in samples):
        memory.append(_line("swap used", "#d62728"))
    parts = _parts(samples)
    memory += [_line(label, COLORS[(i + 1) % len(COLORS)], dash=True) for i, label in enumerate(parts.values())]
    charts.append({"id": "memory", "title": "Memory", "unit": "GB", "y_max": round(total_gb * 1.05, 2) or None,
                   "series": memory})

    names: dict[int, str] = {}
    for s in samples:
        for g in s.get("gpus") or []:   # int(): averaged history rows hold the index as 0.0
            names[int(g["index"])] = g.get("name") or f"GPU {int(g['index'])}"
    for index, name in sorted(names.items()):
        charts.append({"id": f"gpu{index}", "title": f"GPU {index}: {name}", "unit": "%", "y_max": 105,
                       "series": [_line("utilization %", "#2ca02c", width=2), _line("memory used %", "#9467bd", fill=True)]})
    if parts:
        charts.append({"id": "llmos", "title": "LLM OS: CPU per part", "unit": "% of one core", "y_max": None,
                       "series": [_line(label, COLORS[(i + 1) % len(COLORS)]) for i, label in enumerate(parts.values())]})
    return [c for c in charts if only is None or c["id"] in only]


def columns(samples: list[dict], charts: list[dict]) -> dict[str, list[list[float | None]]]:
    """Per chart id, one list of values per line of `charts`, aligned on the samples."""
    parts = _parts(samples)
    by_label = {label: part for part, label in parts.items()}
    out: dict[str, list[list[float | None]]] = {}
    for chart in charts:
        out[chart["id"]] = [[_value(s, chart["id"], line["label"], by_label) for s in samples]
                            for line in chart["series"]]
    return out


def window_payload(samples: list[dict], markers: list[dict], window_s: float, epoch: str,
                   max_points: int = MAX_POINTS, only: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Everything a fresh chart needs: the layout and the whole window, downsampled to `max_points`."""
    charts = layout(samples, only)
    ts, values = _downsampled(samples, charts, max_points)
    return {"epoch": epoch, "reset": True, "window_s": window_s, "charts": charts, "ts": ts, "values": values,
            "markers": [_marker(m) for m in markers]}


def increment_payload(samples: list[dict], markers: list[dict], charts: list[dict], epoch: str,
                      max_points: int) -> dict[str, Any]:
    """The samples and markers since the last payload, on the layout the chart already has."""
    ts, values = _downsampled(samples, charts, max_points)
    return {"epoch": epoch, "reset": False, "ts": ts, "values": values, "markers": [_marker(m) for m in markers]}


def feed_payload(samples: list[dict], markers: list[dict]) -> dict[str, Any]:
    """The live feed's content (monitor_feed.py): recent samples, each line's values under its chart id and
    label, so a browser holding any layout takes the lines it draws and notices one it lacks."""
    charts = layout(samples)
    values = columns(samples, charts)
    return {"ts": [round(s["ts"], 2) for s in samples],
            "lines": {c["id"]: {line["label"]: col for line, col in zip(c["series"], values[c["id"]])} for c in charts},
            "markers": [_marker(m) for m in markers]}


def fits(samples: list[dict], charts: list[dict], only: tuple[str, ...] | None = None) -> bool:
    """Whether `charts` has a line for everything in `samples` (a new job or GPU needs a new layout)."""
    have = {(c["id"], line["label"]) for c in charts for line in c["series"]}
    return all((c["id"], line["label"]) in have for c in layout(samples, only) for line in c["series"])


# ---- inside ----
def _line(label: str, color: str, width: float = 1.5, dash: bool = False, fill: bool = False) -> dict:
    return {"label": label, "color": color, "width": width, "dash": dash, "fill": fill}


def _parts(samples: list[dict]) -> dict[str, str]:
    """LLM OS parts seen in the samples ("server", "job 12") -> their label, at most 50 characters."""
    parts: dict[str, str] = {}
    for s in samples:
        for part, t in (s.get("llmos") or {}).items():
            parts[part] = (t.get("label") or part)[:50]
    return parts


def _value(sample: dict, chart: str, label: str, parts_by_label: dict[str, str]) -> float | None:
    if chart == "cpu":
        if label == "total":
            return _round(sample["cpu"].get("total"))
        per_core = sample["cpu"].get("per_core") or []
        i = int(label.split()[1])
        return _round(per_core[i]) if i < len(per_core) else None
    if chart == "memory":
        mem = sample["mem"]
        if label == "RAM used":
            return _round(mem.get("used"), GB)
        if label == "swap used":
            return _round(mem.get("swap_used"), GB)
        return _round(((sample.get("llmos") or {}).get(parts_by_label.get(label)) or {}).get("rss"), GB)
    if chart == "llmos":
        return _round(((sample.get("llmos") or {}).get(parts_by_label.get(label)) or {}).get("cpu"))
    index = int(chart[3:])   # "gpu1"
    g = next((g for g in sample.get("gpus") or [] if int(g["index"]) == index), None)
    if g is None:
        return None
    if label == "utilization %":
        return _round(g.get("util"))
    used, total = g.get("mem_used"), g.get("mem_total")
    return None if used is None or not total else _round(100.0 * used / total)


def _round(value, by: float = 1.0) -> float | None:
    return None if value is None else round(value / by, 3 if by > 1 else 1)


def _downsampled(samples: list[dict], charts: list[dict], max_points: int):
    ts = [round(s["ts"], 2) for s in samples]
    values = columns(samples, charts)
    flat = {f"{cid}\t{i}": col for cid, cols in values.items() for i, col in enumerate(cols)}
    ts, flat = minmax_buckets(ts, flat, max_points)
    out: dict[str, list] = {cid: [None] * len(cols) for cid, cols in values.items()}
    for key, col in flat.items():
        cid, i = key.split("\t")
        out[cid][int(i)] = col
    return ts, out


def _marker(m: dict) -> dict:
    return {"ts": m["ts"], "kind": m["kind"], "text": f"{m['kind']}: {m['message']}"[:200],
            "alert": m["kind"] == "alert"}
