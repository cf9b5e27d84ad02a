"""Engine errors as OpenAI's error object, {"error": {"message", "type", "param", "code"}}, with the right status.

Clients (the openai package among them) pick their exception class from the status: unknown model 404,
bad request 400, bad key 401, a full queue 429 (with Retry-After), no memory for the model 503.
"""
from __future__ import annotations

from ..accounts import LimitReached
from ..errors import Busy, InsufficientMemory, InvalidInput, LLMOSError, ModelNotFound, format_bytes

# Seconds a client is told to wait when a model's queue is full: about one short reply.
RETRY_AFTER_S = 2


class Unauthorized(LLMOSError):
    hint = ("send your API key as 'Authorization: Bearer KEY' (`python -m llmos_core keys create --user NAME`, "
            "or LLMOS_API_KEY)")


def error_body(message: str, kind: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def describe(exc: Exception) -> tuple[int, dict, dict]:
    """-> (HTTP status, body, extra headers) for an exception raised while serving a request."""
    if isinstance(exc, LLMOSError):
        text = f"{exc.message}. {exc.hint}" if exc.hint else exc.message
    else:   # a bug: say what it was, never the traceback
        return 500, error_body(f"internal error: {type(exc).__name__}", "server_error", "internal_error"), {}
    if isinstance(exc, ModelNotFound):
        return 404, error_body(text, "invalid_request_error", "model_not_found", "model"), {}
    if isinstance(exc, Unauthorized):
        return 401, error_body(text, "authentication_error", "invalid_api_key"), {}
    if isinstance(exc, LimitReached):
        return 429, error_body(text, "rate_limit_error", "user_limit"), {"Retry-After": str(RETRY_AFTER_S)}
    if isinstance(exc, Busy):
        return 429, error_body(text, "rate_limit_error", "queue_full"), {"Retry-After": str(RETRY_AFTER_S)}
    if isinstance(exc, InsufficientMemory):
        figures = (f" (needed {format_bytes(exc.needed)}, free {format_bytes(exc.free)}, "
                   f"budget {format_bytes(exc.budget)})")
        return 503, error_body(text + figures, "server_error", "insufficient_memory"), {"Retry-After": "30"}
    if isinstance(exc, InvalidInput):
        code = "context_length_exceeded" if "too long" in exc.message else "invalid_request"
        return 400, error_body(text, "invalid_request_error", code), {}
    return 500, error_body(text, "server_error", "engine_error"), {}
