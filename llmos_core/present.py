"""How figures read, the same on every page and in every CLI command: sizes, durations, rates, and the
one-line summary under a chat reply. Missing figures read "N/A", never raise (nvitop's sentinel)."""
from __future__ import annotations

import math

NA = "N/A"


def format_bytes(n: float | int | None) -> str:
    """1536 -> '1.5 KB'. Decimal-free for bytes, one decimal above."""
    if n is None:
        return NA
    n = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def format_duration(seconds: float | None) -> str:
    """42.4 -> '42 s', 125 -> '2 min 05 s', 3660 -> '1 h 01 min'."""
    if seconds is None or not math.isfinite(seconds):
        return NA
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def format_rate(bytes_per_s: float | None) -> str:
    return NA if bytes_per_s is None else f"{format_bytes(bytes_per_s)}/s"


def reply_figures(stats: dict) -> str:
    """The caption under a chat reply: '12 tokens · first token 0.31 s · 48.2 tokens/s · model (backend)'."""
    parts = [f"{stats.get('tokens', 0)} tokens"]
    if stats.get("ttft_s") is not None:
        parts.append(f"first token {stats['ttft_s']:.2f} s")
    if stats.get("tokens_per_s") is not None:
        parts.append(f"{stats['tokens_per_s']:.1f} tokens/s")
    if stats.get("model"):
        parts.append(stats["model"] + (f" ({stats['backend']})" if stats.get("backend") else ""))
    reason = stats.get("finish_reason")
    if reason == "cancelled":
        parts.append("stopped")
    elif reason == "length":
        parts.append("hit max new tokens")
    return " · ".join(parts)
