"""One Settings dataclass: where data lives, how much memory models may take, how long idle ones stay.

Every field can be overridden by an environment variable (LLMOS_<FIELD>, upper case); the help text
in each field's metadata is reused by the CLI and the UI.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from .errors import SettingsError

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int:
    """'4GB', '512m', '1.5 GiB', '1000' -> bytes."""
    match = _SIZE.match(str(text))
    if not match:
        raise SettingsError(f"cannot read {text!r} as a size", "write it like 4GB, 512MB or 1000000")
    number, unit = match.groups()
    return int(float(number) * _UNITS[(unit or "").lower()[:1]])


@dataclass
class Settings:
    home: Path = field(default_factory=lambda: Path.home() / ".llmos",
                       metadata={"help": "data folder: database, models, jobs, logs (LLMOS_HOME)"})
    memory_budget: int | None = field(default=None, metadata={
        "help": "bytes that resident models may take; default: 60% of the memory free at start (LLMOS_MEMORY_BUDGET, e.g. 8GB)"})
    keep_alive_s: float = field(default=600.0, metadata={
        "help": "seconds an idle model stays loaded before it is unloaded (LLMOS_KEEP_ALIVE_S)"})
    device: str = field(default="auto", metadata={
        "help": "auto, cpu, cuda, cuda:N or mps (LLMOS_DEVICE)"})
    dtype: str = field(default="auto", metadata={
        "help": "auto, float32, bfloat16 or float16 (LLMOS_DTYPE)"})
    offline: bool = field(default=False, metadata={
        "help": "never contact the Hugging Face hub (LLMOS_OFFLINE, also HF_HUB_OFFLINE)"})
    max_upload_mb: int = field(default=200, metadata={"help": "largest upload accepted, in MB (LLMOS_MAX_UPLOAD_MB)"})
    threads: int | None = field(default=None, metadata={"help": "CPU threads for inference (LLMOS_THREADS); default: all cores"})
    export_gguf: bool = field(default=True, metadata={
        "help": "a training job ends by exporting the model to a Q8_0 GGUF that llama.cpp serves (LLMOS_EXPORT_GGUF=0: off)"})
    api_port: int | None = field(default=None, metadata={
        "help": "serve the OpenAI-compatible API on this port from the engine (LLMOS_API_PORT); default: off"})
    api_host: str = field(default="127.0.0.1", metadata={
        "help": "address the API listens on (LLMOS_API_HOST); beyond loopback it needs LLMOS_API_KEY"})
    api_key: str | None = field(default=None, repr=False, metadata={
        "help": "the key API clients must send as 'Authorization: Bearer KEY' (LLMOS_API_KEY)"})
    api_max_body_mb: float = field(default=4.0, metadata={
        "help": "largest API request body, in MB; a bigger one is refused with 413 before it is parsed "
                "(LLMOS_API_MAX_BODY_MB)"})
    public_host: str | None = field(default=None, metadata={
        "help": "the name (or names, comma-separated) clients use to reach LLM OS beyond this machine, as in "
                "their Host header: 'llm.example.org'; loopback names are always accepted, any other is "
                "refused, so a web page cannot reach the API through a DNS rebinding (LLMOS_PUBLIC_HOST)"})
    api_stream_interval_ms: float = field(default=50.0, metadata={
        "help": "a streamed API reply sends at most one chunk per this many milliseconds, joining the tokens "
                "made meanwhile; the first token and the last go at once (LLMOS_API_STREAM_INTERVAL_MS; 0: a "
                "chunk per token)"})
    keep_events_days: float = field(default=30.0, metadata={
        "help": "days the event log is kept (LLMOS_KEEP_EVENTS_DAYS)"})
    keep_usage_days: float = field(default=30.0, metadata={
        "help": "days jobs' sampled CPU and memory use is kept (LLMOS_KEEP_USAGE_DAYS)"})
    keep_uploads_days: float = field(default=7.0, metadata={
        "help": "days an uploaded document no job refers to is kept (LLMOS_KEEP_UPLOADS_DAYS)"})
    prefix_cache: bool = field(default=True, metadata={
        "help": "reuse the KV state of earlier prompts that start a new one (a conversation's history, a "
                "document's passages, a translation's instructions): only the rest is read (LLMOS_PREFIX_CACHE=0: "
                "off, every prompt is read whole)"})
    prefix_cache_mb: float = field(default=256.0, metadata={
        "help": "memory per loaded llama.cpp model for the KV cells of recent prompts kept for reuse, in MB, "
                "counted in the model's size; least recently used prompts are dropped first (LLMOS_PREFIX_CACHE_MB)"})
    prompt_lookup: bool = field(default=True, metadata={
        "help": "prompt-lookup speculative decoding for greedy replies: tokens copied from the prompt are "
                "checked several at a time; the output is the same (LLMOS_PROMPT_LOOKUP=0: off)"})
    cluster: str | None = field(default=None, metadata={
        "help": "a Ray dashboard address (http://head:8265) to run jobs on that Ray cluster (LLMOS_CLUSTER); "
                "unset: this machine, no Ray needed"})

    def __post_init__(self) -> None:
        self.home = Path(self.home).expanduser()
        if self.memory_budget is not None and int(self.memory_budget) <= 0:
            raise SettingsError(f"memory budget must be positive, got {self.memory_budget}")
        if self.keep_alive_s < 0:
            raise SettingsError(f"keep-alive must be 0 or more seconds, got {self.keep_alive_s}")
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            raise SettingsError(f"unknown device {self.device!r}", "use auto, cpu, cuda, cuda:N or mps")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise SettingsError(f"unknown dtype {self.dtype!r}", "use auto, float32, bfloat16 or float16")
        if self.max_upload_mb <= 0:
            raise SettingsError("max upload must be positive")
        if self.threads is not None and self.threads <= 0:
            raise SettingsError("threads must be positive")
        if self.api_port is not None and not 0 <= self.api_port <= 65535:
            raise SettingsError(f"API port must be between 0 and 65535, got {self.api_port}")
        if not 0 <= self.api_stream_interval_ms <= 1000:
            raise SettingsError(f"the API's stream interval must be 0 to 1000 ms, got {self.api_stream_interval_ms}",
                                "0 sends a chunk per token; 50 (the default) joins the tokens of each 50 ms")
        if not 0 < self.api_max_body_mb <= 1024:
            raise SettingsError(f"the API's body limit must be over 0 and at most 1024 MB, got {self.api_max_body_mb}")
        for name in ("keep_events_days", "keep_usage_days", "keep_uploads_days"):
            if not getattr(self, name) > 0:
                raise SettingsError(f"{name} must be a positive number of days, got {getattr(self, name)}")
        if not 0 <= self.prefix_cache_mb <= 65536:
            raise SettingsError(f"the prefix cache must be 0 to 65536 MB, got {self.prefix_cache_mb}")
        if self.cluster is not None and not re.fullmatch(r"https?://[^\s/]+(:\d+)?/?", self.cluster.strip()):
            raise SettingsError(f"LLMOS_CLUSTER={self.cluster!r} is not a Ray dashboard address",
                                "write it like http://head:8265, or unset it to run jobs on this machine")

    # Folders under home; created on first use by whoever writes there.
    @property
    def db_path(self) -> Path:
        return self.home / "llmos.db"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def jobs_dir(self) -> Path:
        return self.home / "jobs"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def uploads_dir(self) -> Path:
        """Documents uploaded for translation jobs (pruned when old and unused: retention.py)."""
        return self.home / "translate" / "uploads"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides) -> "Settings":
        env = dict(os.environ if env is None else env)
        values: dict = {}
        for f in fields(cls):
            raw = env.get(f"LLMOS_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(f.name, raw)
        if "offline" not in values and env.get("HF_HUB_OFFLINE", "") in ("1", "true", "True"):
            values["offline"] = True
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @staticmethod
    def help(name: str) -> str:
        return next(f.metadata.get("help", "") for f in fields(Settings) if f.name == name)


def _convert(name: str, raw: str):
    try:
        if name == "home":
            return Path(raw)
        if name == "memory_budget":
            return parse_size(raw)
        if name in ("keep_alive_s", "prefix_cache_mb", "api_stream_interval_ms", "api_max_body_mb", "keep_events_days", "keep_usage_days", "keep_uploads_days"):
            return float(raw)
        if name in ("max_upload_mb", "threads", "api_port"):
            return int(raw)
        if name in ("offline", "export_gguf", "prefix_cache", "prompt_lookup"):
            return raw.strip().lower() in ("1", "true", "yes", "on")
        return raw.strip()
    except ValueError as exc:
        raise SettingsError(f"LLMOS_{name.upper()}={raw!r} is not valid: {exc}") from exc
