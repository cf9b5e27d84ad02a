"""`monitor`: a snapshot of CPU, memory, GPUs and LLM OS processes (--once), or a line per second (--watch).

Runs its own sampler (no engine needed). The jobs table names job processes; the models in memory
come from the running engine's control socket when one answers, so its pid reads
"LLM OS engine ... holds gemma-3-270m 1.0 GB" instead of "python".
"""
from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime

from .. import control
from ..alerts import AlertTracker
from ..monitor import Sampler
from ..settings import Settings
from ..store import Store
from . import format_bytes, print_json, table


def register(subparsers) -> None:
    parser = subparsers.add_parser("monitor", help="CPU, memory and GPU load, per process, job and model")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="print one snapshot and exit (the default)")
    mode.add_argument("--watch", action="store_true", help="print a line per second until interrupted")
    parser.add_argument("--count", type=int, default=0, help="with --watch: stop after this many lines")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples (default 1)")
    parser.add_argument("--json", action="store_true", help="JSON: one object, or one per line with --watch")
    parser.set_defaults(func=run)


def run(args) -> int:
    settings = Settings.from_env()
    store = Store(settings.db_path) if settings.db_path.exists() else None   # a snapshot never creates a database
    socket = settings.home / "engine.sock"
    engine_pid = _engine_pid(settings)
    sampler = Sampler(store, server_pid=engine_pid, persist=False, interval_s=args.interval,
                      resident=lambda: control.call(socket, "ps", timeout=2) if engine_pid else [])
    try:
        sampler.sample_once()             # rates and percentages need a second reading
        if args.watch:
            return _watch(sampler, args)
        time.sleep(min(args.interval, 0.5))
        snap = sampler.sample_once()
        if args.json:
            print_json(snap)
        else:
            _print_snapshot(snap)
        return 0
    finally:
        sampler.gpu.close()
        if store is not None:
            store.close()


def _watch(sampler: Sampler, args) -> int:
    """A line per sample; an alert that starts or ends gets a line of its own (the engine records them)."""
    alerts = AlertTracker(sampler.store, record=False)
    shown = 0
    next_at = time.monotonic()
    while not args.count or shown < args.count:
        next_at += args.interval
        time.sleep(max(next_at - time.monotonic(), 0.0))
        snap = sampler.sample_once()
        started, ended = alerts.check(snap)
        if args.json:
            snap = {**snap, "alerts_started": [a.message for a in started], "alerts_ended": [a.key for a in ended]}
        print(json.dumps(snap, default=str) if args.json else watch_line(snap), flush=True)
        if not args.json:
            for alert in started:
                print(f"ALERT {alert.message}", flush=True)
            for alert in ended:
                print(f"alert ended: {alert.key}", flush=True)
        shown += 1
    return 0


def watch_line(snap: dict) -> str:
    """One line: time, CPU total and per core, RAM, swap, each GPU, and the busiest LLM OS part."""
    cpu, mem = snap["cpu"], snap["mem"]
    cores = " ".join(f"{c:.0f}" for c in cpu["per_core"] or [])
    parts = [datetime.fromtimestamp(snap["ts"]).strftime("%H:%M:%S"),
             f"cpu {_pct(cpu['total'])} [{cores}]",
             f"load {cpu['load'][0]:.2f}" if cpu.get("load") else "",
             f"ram {format_bytes(mem['used'])}/{format_bytes(mem['total'])}",
             f"swap {format_bytes(mem['swap_used'])}" if mem["swap_total"] else ""]
    for g in snap["gpus"] or []:
        parts.append(f"gpu{g['index']} {_pct(g['util'])} {format_bytes(g['mem_used'])}/{format_bytes(g['mem_total'])}")
    if snap["gpus"] is None:
        parts.append("no gpu")
    for part in sorted(snap["llmos"].values(), key=lambda p: -p["cpu"])[:2]:
        parts.append(f"| {part['label'][:40]} {part['cpu']:.0f}% {format_bytes(part['rss'])}")
    return "  ".join(p for p in parts if p)


def _print_snapshot(snap: dict) -> None:
    print(watch_line(snap))
    if snap["gpus"] is None:
        print(snap["gpu_status"])
    for g in snap["gpus"] or []:
        print(f"GPU {g['index']} {g['name']}: {_pct(g['util'])} busy, {format_bytes(g['mem_used'])} of "
              f"{format_bytes(g['mem_total'])}, {g['temp_c']} C, {g['power_w']} W, SM {g['clock_sm_mhz']} MHz"
              + (f"  ERROR {g['error']}" if g.get("error") else ""))
    rows = [{"pid": p["pid"], "cpu%": None if p["cpu"] is None else round(p["cpu"], 1), "ram": format_bytes(p["rss"]),
             "gpu mem": format_bytes(p["gpu_mem"]) if p["gpu_mem"] is not None else None,
             "what": p["label"][:70]} for p in snap["processes"][:20]]
    print(table(rows, ["pid", "cpu%", "ram", "gpu mem", "what"]))
    for lost in snap["lost"]:
        print(f"lost: {lost['message']}", file=sys.stderr)


def _engine_pid(settings: Settings) -> int | None:
    """The pid of the running engine (the app or `serve`), if one holds the data folder."""
    try:
        pid = int((settings.home / "engine.lock").read_text().strip() or 0)
    except (OSError, ValueError):
        return None
    if not pid or pid == os.getpid() or not control.is_up(settings.home / "engine.sock"):
        return None
    return pid


def _pct(value) -> str:
    return "-" if value is None else f"{value:.0f}%"
