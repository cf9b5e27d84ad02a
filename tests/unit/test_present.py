"""Sizes, durations, rates and a chat reply's figures read the same everywhere; missing ones read N/A."""
import math

from llmos_core.errors import format_bytes as from_errors
from llmos_core.present import format_bytes, format_duration, format_rate, reply_figures
from llmos_core.training.estimate import format_seconds


def test_sizes_durations_and_rates():
    assert format_bytes(512) == "512 B" and format_bytes(1536) == "1.5 KB" and format_bytes(3 * 1024**3) == "3.0 GB"
    assert format_bytes(None) == "N/A" and format_rate(None) == "N/A" and format_rate(2048) == "2.0 KB/s"
    assert format_duration(42.4) == "42 s" and format_duration(125) == "2 min 05 s"
    assert format_duration(3 * 3600 + 60) == "3 h 01 min"
    assert format_duration(None) == "N/A" and format_duration(math.inf) == "N/A"
    assert from_errors is format_bytes and format_seconds is format_duration   # one implementation


def test_reply_figures():
    stats = {"tokens": 12, "ttft_s": 0.314, "tokens_per_s": 48.25, "model": "tiny", "backend": "llamacpp",
             "finish_reason": "length"}
    assert reply_figures(stats) == "12 tokens · first token 0.31 s · 48.2 tokens/s · tiny (llamacpp) · hit max new tokens"
    assert reply_figures({"tokens": 0, "finish_reason": "cancelled"}) == "0 tokens · stopped"
