"""The `benchmark` job kind: holds a chosen amount of real memory for a chosen time. No shell, no model.

It exists to test and measure the scheduler: admission by memory, cancel of a process tree
(`children` extra processes, optionally deaf to SIGTERM), escalation (`ignore_cancel`), crashes
(`crash`: exception, exit with a code, or SIGKILL of itself), admission (`declare_mb` declares more
memory than it takes, so tests can fake a big job cheaply) and resume (it saves how long it has
slept in its checkpoint folder and sleeps only the rest when resumed).
On cancel it returns at once and leaves its children behind on purpose: killing the tree is the
scheduler's job, and this is how a careless program behaves.
Those test hooks lie to admission or misbehave on purpose, so they need LLMOS_DEV=1; `seconds` is bounded.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

from ..access import dev_enabled
from ..errors import InvalidInput

RESUMABLE = True
MB = 1024**2
# Measured resident size of an idle worker (Python + sqlite + llmos_core.jobs) and of a bare child.
WORKER_BASE_BYTES = 40 * MB
CHILD_BASE_BYTES = 12 * MB
CRASHES = ("", "exception", "exit", "kill")
MAX_SECONDS = 24 * 3600.0
# Parameters that lie to admission (declare_mb) or misbehave on purpose: for tests, with LLMOS_DEV=1 only.
DEV_HOOKS = ("declare_mb", "crash", "crash_after", "exit_code", "ignore_cancel", "stubborn_children")

DEFAULTS = {"memory_mb": 100.0, "seconds": 5.0, "children": 0, "child_memory_mb": 0.0, "crash": "",
            "crash_after": 0.0, "exit_code": 3, "ignore_cancel": False, "stubborn_children": False,
            "device": "cpu", "declare_mb": 0.0}

# A child: allocate and touch N bytes, optionally ignore SIGTERM, then sleep until killed (or a cap).
_CHILD = ("import signal, sys, time\n"
          "n = int(sys.argv[1]); buf = bytearray(n)\n"
          "if n: buf[::4096] = b'\\x01' * len(range(0, n, 4096))\n"
          "if sys.argv[2] == '1': signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
          "time.sleep(float(sys.argv[3]))\n")


def validate(params: dict, settings=None) -> dict:
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise InvalidInput(f"benchmark does not take {', '.join(sorted(unknown))}",
                           f"its parameters: {', '.join(DEFAULTS)}")
    clean = {**DEFAULTS, **params}
    try:
        clean["memory_mb"] = float(clean["memory_mb"])
        clean["seconds"] = float(clean["seconds"])
        clean["children"] = int(clean["children"])
        clean["child_memory_mb"] = float(clean["child_memory_mb"])
        clean["crash_after"] = float(clean["crash_after"])
        clean["declare_mb"] = float(clean["declare_mb"])
        clean["exit_code"] = int(clean["exit_code"])
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"benchmark parameter is not a number: {exc}", "memory_mb=512 seconds=10") from exc
    for name in ("ignore_cancel", "stubborn_children"):
        clean[name] = _flag(clean[name], name)
    if min(clean["memory_mb"], clean["seconds"], clean["child_memory_mb"], clean["crash_after"],
           clean["declare_mb"]) < 0:
        raise InvalidInput("benchmark sizes and times cannot be negative")
    if not 0 <= clean["children"] <= 8:
        raise InvalidInput(f"children must be 0 to 8, got {clean['children']}")
    if clean["crash"] not in CRASHES:
        raise InvalidInput(f"crash must be one of {', '.join(repr(c) for c in CRASHES)}, got {clean['crash']!r}")
    if clean["device"] not in ("cpu", "cuda"):
        raise InvalidInput(f"device must be cpu or cuda, got {clean['device']!r}")
    if not clean["seconds"] <= MAX_SECONDS:   # also NaN
        raise InvalidInput(f"a benchmark holds memory for at most {MAX_SECONDS:.0f} s, not {clean['seconds']:g}",
                           "give a shorter time in seconds")
    hooks = [name for name in DEV_HOOKS if clean[name] != DEFAULTS[name]]
    if hooks and not dev_enabled():
        raise InvalidInput(f"{', '.join(hooks)}: test hooks of the benchmark kind, off outside development",
                           "start LLM OS with LLMOS_DEV=1 to use them (tests do)")
    return clean


def estimate(params: dict, settings=None) -> dict:
    if params["declare_mb"]:
        return {"memory_bytes": int(params["declare_mb"] * MB), "device": params["device"], "seconds": params["seconds"]}
    main = params["memory_mb"] * MB
    children = params["children"] * (params["child_memory_mb"] * MB + CHILD_BASE_BYTES)
    if params["device"] == "cuda":   # the job's own bytes live on the GPU; the processes stay on the CPU
        return {"memory_bytes": int(main), "device": "cuda", "seconds": params["seconds"]}
    return {"memory_bytes": int(main + children + WORKER_BASE_BYTES), "device": "cpu", "seconds": params["seconds"]}


def describe(params: dict) -> str:
    text = f"hold {params.get('memory_mb', 0):g} MB for {params.get('seconds', 0):g} s"
    if params.get("children"):
        text += f", {params['children']} child process(es)"
    if params.get("crash"):
        text += f", crash ({params['crash']})"
    return text


def run(ctx) -> dict:
    p = ctx.params
    state_file = ctx.checkpoint_dir / "state.json"
    done = 0.0
    if ctx.resume and state_file.exists():
        done = float(json.loads(state_file.read_text())["elapsed"])
        ctx.log.info("resuming after %.1f s already done", done)
    held = _allocate(int(p["memory_mb"] * MB), p["device"])
    ctx.log.info("holding %.0f MB on %s", p["memory_mb"], p["device"])
    children = [subprocess.Popen([sys.executable, "-c", _CHILD, str(int(p["child_memory_mb"] * MB)),
                                  "1" if p["stubborn_children"] else "0", str(p["seconds"] + 120)])
                for _ in range(p["children"])]
    if children:
        ctx.log.info("started children %s", [c.pid for c in children])
    start = time.monotonic() - done
    last_report = -1.0
    step = 0
    while True:
        elapsed = time.monotonic() - start
        if p["crash"] and elapsed >= p["crash_after"]:
            _crash(ctx, p)
        if elapsed >= p["seconds"]:
            break
        if ctx.cancelled() and not p["ignore_cancel"]:
            _save(state_file, elapsed)
            ctx.log.info("cancelled after %.1f s; state saved, children left to the scheduler", elapsed)
            return {"elapsed_s": round(elapsed, 2), "resumed_from_s": done, "completed": False}
        if elapsed - last_report >= 0.5:
            step += 1
            last_report = elapsed
            _save(state_file, elapsed)
            ctx.progress(elapsed / p["seconds"] if p["seconds"] else 1.0, f"{elapsed:.1f} of {p['seconds']:g} s")
            ctx.metric(step, elapsed_s=round(elapsed, 2), held_mb=p["memory_mb"])
        time.sleep(min(0.05, max(p["seconds"] - elapsed, 0.001)))
    for child in children:   # a clean finish cleans up after itself
        child.kill()
        child.wait()
    _save(state_file, p["seconds"])
    del held
    return {"elapsed_s": p["seconds"], "resumed_from_s": done, "completed": True, "held_mb": p["memory_mb"]}


def _allocate(n: int, device: str):
    if device == "cuda":
        import torch

        return torch.ones(n // 4, dtype=torch.float32, device="cuda")
    buf = bytearray(n)
    if n:
        buf[::4096] = b"\x01" * len(range(0, n, 4096))   # touch every page so it is really resident
    return buf


def _crash(ctx, p: dict) -> None:
    ctx.log.info("crashing on purpose (%s)", p["crash"])
    if p["crash"] == "exception":
        raise RuntimeError("benchmark crashed on purpose")
    for handler in logging.getLogger().handlers:   # os._exit and SIGKILL skip the usual flush
        handler.flush()
    if p["crash"] == "exit":
        os._exit(p["exit_code"])
    os.kill(os.getpid(), signal.SIGKILL)


def _save(path, elapsed: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"elapsed": elapsed}))
    tmp.replace(path)   # atomic: a kill mid-write never leaves a torn checkpoint


def _flag(value, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise InvalidInput(f"{name} must be true or false, got {value!r}")
