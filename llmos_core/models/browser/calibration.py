"""This machine's figures for the predictions: memory bandwidth (decoding reads every weight once a token)
and matmul throughput (reading a prompt is 2 x parameters FLOPs a token), measured once into the data folder,
then corrected by what LLM OS has measured here since: the speeds of finished chat replies (the store's
messages keep each reply's backend, decoding tokens/s, time to first token and prompt length).

The matmul figure is the training estimate's (training/estimate.matmul_flops, the same benchmark and
cache). The bandwidth benchmark sums a 256 MB tensor on all threads, the MEDIAN of short windows, not the
best: decoding runs for seconds at whatever share of the cores the scheduler gives it, so the typical
window is what it sees (on a quiet machine the two are the same; on a loaded one the best window is a
share of the cores the process does not keep). Two per-token costs that are not bandwidth are measured
too (the fastest of their runs: their own cost, without what the load adds): `op_s`, one small torch op
called from Python (transformers pays it for each of the ~60 ops of a decoder layer at every token), and `sample_s`, the sampler (llmos_core/sampling.py, shared by both runners)
over a SAMPLE_VOCAB-entry logits row (a 262k vocabulary pays it at every token, whatever the model's size).
Then llama.cpp itself runs for a second or a few on the embedded SmolLM2 (runner_probe.py): its decode's
time beyond its bytes, per layer (`layer_s`), and its own prompt rate, so the llama.cpp predictions of
every other model and form come from this machine's runner, not from constants fitted elsewhere.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import threading
import time
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

from ...settings import Settings
from .. import compute_thread
from .machine import SAMPLE_VOCAB, Calibration  # noqa: F401 (Calibration: imported from here too)

BENCH_BYTES = 256 * 1024**2
BANDWIDTH_WINDOWS = 9
MATVEC_INPUTS = 1024      # the matrix-vector benchmark's inputs per row (hidden sizes here: 576 to 2048)
LEARN_FROM = 200          # the last chat replies the correction reads
_lock = threading.Lock()


def _path(settings: Settings) -> Path:
    return settings.home / "models" / "calibration.json"


def _key() -> str:
    return f"{platform.node()} {os.cpu_count()} cores"


def _seconds(step, runs: int, pick=statistics.median) -> float:
    step()   # warm-up: thread pool, pages touched
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return pick(times)


def measure_bandwidth() -> float:
    """Bytes/s of a full-thread sum of a 256 MB tensor, the median of BANDWIDTH_WINDOWS runs (about 1 s)."""
    import torch

    data = torch.ones(BENCH_BYTES // 4, dtype=torch.float32)
    return BENCH_BYTES / _seconds(data.sum, BANDWIDTH_WINDOWS)


def measure_matvec() -> float:
    """Bytes/s torch's fp32 matrix-vector product (nn.functional.linear, one row: a decoded token) reads a
    BENCH_BYTES weight at, MATVEC_INPUTS wide, the median of BANDWIDTH_WINDOWS runs. A transformers token is
    such products over every weight, and they do not reach the plain sum's rate: each output is a short dot
    product, split across the threads (quiet, Gemma 3 270M fp32 decoded at 0.30 of the sum's rate, h31c)."""
    import torch

    weight = torch.ones(BENCH_BYTES // 4 // MATVEC_INPUTS, MATVEC_INPUTS, dtype=torch.float32)
    row = torch.ones(1, MATVEC_INPUTS, dtype=torch.float32)
    return BENCH_BYTES / _seconds(lambda: torch.nn.functional.linear(row, weight), BANDWIDTH_WINDOWS)


def measure_int8_matvec() -> float:
    """Bytes/s the transformers-int8 runner's kernel (models/int8.py: torch.ops.aten._weight_int8pack_mm, a
    bf16 row times per-row-scaled int8 weights) reads a BENCH_BYTES int8 weight at, MATVEC_INPUTS wide, the
    median of BANDWIDTH_WINDOWS runs; 0.0 where torch has no such kernel."""
    import torch

    from ..int8 import int8_supported

    if not int8_supported():
        return 0.0
    weight = torch.ones(BENCH_BYTES // MATVEC_INPUTS, MATVEC_INPUTS, dtype=torch.int8)
    scales = torch.ones(weight.shape[0], dtype=torch.bfloat16)
    row = torch.ones(1, MATVEC_INPUTS, dtype=torch.bfloat16)
    return BENCH_BYTES / _seconds(lambda: torch.ops.aten._weight_int8pack_mm(row, weight, scales), BANDWIDTH_WINDOWS)


def measure_op() -> float:
    """Seconds of one small torch op called from Python: dispatch, and the wake-up of the intra-op threads."""
    import torch

    a, b = torch.ones(4096), torch.ones(4096)
    return _seconds(lambda: [torch.add(a, b) for _ in range(200)], 9, min) / 200


def measure_sampler() -> float:
    """Seconds the chat sampler takes for one token over a SAMPLE_VOCAB logits row (default settings): the
    fastest of 15 calls, its own cost. Its softmax splits across the threads, so on a loaded machine the
    median read 0.8 to 36 ms between runs minutes apart (the thread joins predict.py leaves out)."""
    import torch

    from ...generation.request import SamplingParams
    from ...sampling import RequestSampler

    sampler = RequestSampler([1, 2, 3], SamplingParams(seed=0))
    scores = torch.randn(SAMPLE_VOCAB)
    return _seconds(lambda: sampler.sample(scores), 15, min)


def machine(settings: Settings, refresh: bool = False) -> Calibration:
    """The measured figures of this machine, from the data folder, or measured now (a few seconds: the
    benchmarks, then llama.cpp's probe)."""
    path = _path(settings)
    with _lock:
        try:
            stored = json.loads(path.read_text()).get(_key())
        except (OSError, ValueError):
            stored = None
        if stored and "int8_matvec_bandwidth" in stored and not refresh:   # one stored before it: again
            return Calibration(**{k: stored[k] for k in _STORED})
        threads = settings.threads or os.cpu_count() or 1   # the runners' thread count (LLMOS_THREADS)
        calibration = compute_thread.run(_measure, settings, refresh, threads)   # one OpenMP pool: compute_thread.py
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({_key(): {k: getattr(calibration, k) for k in _STORED}}, indent=1))
        tmp.replace(path)
        return calibration


def _measure(settings: Settings, refresh: bool, threads: int) -> Calibration:
    from ...training.estimate import matmul_flops

    with _torch_threads(threads):
        calibration = Calibration(measure_bandwidth(), matmul_flops("cpu", settings, refresh=refresh),
                                  time.time(), measure_op(), measure_sampler(), matvec_bandwidth=measure_matvec(),
                                  int8_matvec_bandwidth=measure_int8_matvec())
    probe_runner(calibration, threads)
    return calibration


@contextmanager
def _torch_threads(threads: int):
    """Measure at the thread count the runners use, and leave torch's setting as it was."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# What the data folder keeps: every measured field; the corrections are learnt again from the replies.
LEARNT = ("decode_correction", "ttft_correction", "samples")
_STORED = tuple(f.name for f in fields(Calibration) if f.name not in LEARNT)


def probe_runner(calibration: Calibration, threads: int) -> None:
    """llama.cpp's figures from a seconds-long run of it (runner_probe.py); left unset where it cannot run."""
    from .runner_probe import measure

    try:
        measured = measure(calibration.bandwidth, threads)
    except Exception:   # a llama.cpp that fails here: the constants apply, as without llama.cpp
        measured = None
    if measured is None:
        return
    run, fitted = measured
    calibration.layer_s, calibration.position_s = fitted.layer_s, fitted.position_s
    calibration.llamacpp_bandwidth = fitted.bandwidth if fitted.bandwidth > calibration.bandwidth else 0.0
    calibration.llamacpp_prompt_flops = fitted.prompt_flops
    calibration.probe = {"decode_s": run.decode_s, "early_decode_s": run.early_decode_s, "prompt_s": run.prompt_s,
                         "threads": run.threads,
                         "tokens": run.tokens}


def measured_replies(store, limit: int = LEARN_FROM) -> list[dict]:
    """The last chat replies with their model, backend and speeds (newest first)."""
    rows = store.query("SELECT c.model AS model, m.stats AS stats FROM messages m JOIN conversations c "
                       "ON c.id = m.conversation_id WHERE m.role = 'assistant' ORDER BY m.id DESC LIMIT ?", (limit,))
    replies = []
    for row in rows:
        try:
            stats = json.loads(row["stats"] or "{}")
        except ValueError:
            continue
        if stats.get("backend") and (stats.get("tokens_per_s") or stats.get("ttft_s")):
            replies.append({"model": row["model"], **stats})
    return replies


def learn(calibration: Calibration, pairs: list[tuple[str, str, str, float]]) -> Calibration:
    """Set the corrections from (kind, runner, quant, measured / uncorrected prediction) pairs: the median
    ratio per runner and quantization, and per runner for the quantizations not measured yet."""
    for kind, table in (("decode", calibration.decode_correction), ("ttft", calibration.ttft_correction)):
        groups: dict[str, list[float]] = {}
        for k, runner, quant, ratio in pairs:
            if k == kind and ratio > 0:
                groups.setdefault(f"{runner} {quant}", []).append(ratio)
                groups.setdefault(runner, []).append(ratio)
        table.update({key: statistics.median(values) for key, values in groups.items()})
    calibration.samples = len(pairs)
    return calibration


def download_rate(settings: Settings) -> float | None:
    """Bytes/s of the last hub downloads here (a moving average), or None before the first."""
    try:
        return float(json.loads(_rate_path(settings).read_text())["bytes_per_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def record_download(settings: Settings, nbytes: int, seconds: float) -> None:
    """Called after a hub download: what the next prediction's download time is based on."""
    if nbytes < 1024**2 or seconds <= 0:   # a small file says more about latency than about the rate
        return
    old = download_rate(settings)
    rate = nbytes / seconds if old is None else 0.7 * old + 0.3 * nbytes / seconds
    path = _rate_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"bytes_per_s": rate, "ts": time.time()}))


def _rate_path(settings: Settings) -> Path:
    return settings.home / "models" / "download_rate.json"
