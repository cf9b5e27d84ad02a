"""Typed errors of LLM OS. Each carries a user-facing hint; pages catch LLMOSError at the boundary."""
from __future__ import annotations

from .present import format_bytes  # noqa: F401  (re-exported: engine messages quote sizes)


class LLMOSError(Exception):
    """Base of every error the engine raises on purpose. `hint` says what the user can do."""

    hint: str = ""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class SettingsError(LLMOSError):
    hint = "check the LLMOS_* environment variables"


class InvalidInput(LLMOSError):
    """Bad user input: wrong file type, empty prompt, malformed data."""


class ModelNotFound(LLMOSError):
    hint = "see `python -m llmos_core models list` for the catalog, or give a Hugging Face id or a local folder"


class ModelLoadError(LLMOSError):
    hint = "the files may be corrupt or not a supported model; check the path or download it again"


class OfflineError(LLMOSError):
    hint = "this machine cannot reach the Hugging Face hub; use an embedded model or a local folder"


class InsufficientMemory(LLMOSError):
    """A model or job does not fit. Carries the figures so the UI can show them."""

    def __init__(self, what: str, needed: int, free: int, budget: int, hint: str | None = None):
        self.needed, self.free, self.budget = needed, free, budget
        message = (f"{what} needs {format_bytes(needed)}, but only {format_bytes(free)} is free "
                   f"(budget {format_bytes(budget)})")
        super().__init__(message, hint or "unload a model on the Models page, or raise LLMOS_MEMORY_BUDGET")


class LoadCancelled(LLMOSError):
    hint = "the load was cancelled; nothing was changed"


class Busy(LLMOSError):
    hint = "try again in a moment"


class JobError(LLMOSError):
    hint = "see the job's log on the Jobs page"


class ClusterError(LLMOSError):
    """The Ray cluster named by LLMOS_CLUSTER cannot be used: unreachable, or a node cannot see the data folder."""
    hint = "check LLMOS_CLUSTER (a Ray dashboard address, http://head:8265) or unset it to run on this machine"

