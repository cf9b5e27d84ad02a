"""The endpoints, in OpenAI's shapes, over the engine's own services (chat, embeddings, catalog, monitor).

Chat and completions go through GenerationService.stream, so an API request queues, batches and
pins its model exactly as a browser chat does. Errors (errors.py) are known before any byte is sent:
a streamed reply starts only once the request is admitted, its model loaded and its prompt checked.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import time
import uuid
from typing import TYPE_CHECKING, AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import InvalidInput, LLMOSError
from ..generation import TokenEvent
from ..generation.tools import ToolCallReader
from ..models.catalog import CAUSAL_LM, EMBEDDING
from .auth import UserAuth, request_user
from .errors import describe, error_body
from .metrics import CONTENT_TYPE, ApiMetrics
from .objects import register_objects
from .schemas import ChatRequest, CompletionRequest, EmbeddingRequest, _Sampling
from .streaming import EventPump, sse, watch_disconnect

if TYPE_CHECKING:
    from ..engine import Engine

class ApiError(Exception):
    """Carries an engine error out of a route, with the model and endpoint for the request counter."""

    def __init__(self, error: Exception, model: str = "", endpoint: str = ""):
        super().__init__(str(error))
        self.error, self.model, self.endpoint = error, model, endpoint


def build_app(engine: "Engine", api_key: str | None, metrics: ApiMetrics) -> FastAPI:
    app = FastAPI(title="LLM OS", version="1", description="OpenAI-compatible API of the LLM OS engine")

    def refuse(error: Exception, model: str = "", endpoint: str = "") -> JSONResponse:
        status, body, headers = describe(error)
        if endpoint:
            metrics.count_request(model, endpoint, status)
        return JSONResponse(body, status_code=status, headers=headers)

    app.add_middleware(UserAuth, engine=engine, api_key=api_key)   # api/auth.py: the key's user, or 401
    register_objects(app, engine)   # /llmos/v1: conversations, collections, jobs of the key's user

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, exc: ApiError):
        return refuse(exc.error, exc.model, exc.endpoint)

    @app.exception_handler(RequestValidationError)
    async def on_bad_body(request: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}"
                             for e in exc.errors()[:5])
        return JSONResponse(error_body(f"invalid request: {problems}", "invalid_request_error", "invalid_request"),
                            status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException):
        return JSONResponse(error_body(str(exc.detail), "invalid_request_error", str(exc.status_code)),
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "pid": os.getpid(), "primary": engine.is_primary,
                "resident": [m["name"] for m in engine.models.resident()]}

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/models")
    def list_models(request: Request) -> dict:
        created = int(engine.started_at)
        return {"object": "list", "data": [
            {"id": s.name, "object": "model", "created": created, "owned_by": "llmos", "task": s.task}
            for s in engine.catalog.visible(request_user(request)) if s.task in (CAUSAL_LM, EMBEDDING)]}

    @app.get("/v1/models/{name}")
    def get_model(name: str, request: Request) -> dict:
        try:
            engine.catalog.check_visible(request_user(request), name)   # someone else's reads as missing
            spec = engine.catalog.get(name)
        except LLMOSError as exc:
            raise ApiError(exc) from exc
        return {"id": spec.name, "object": "model", "created": int(engine.started_at), "owned_by": "llmos",
                "task": spec.task}

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request):
        try:
            plan = body.plan()
        except LLMOSError as exc:
            raise ApiError(exc, body.model, "chat") from exc
        return await _generate(request, body, "chat", lambda cancel, params: engine.chat.stream(
            body.model, plan.messages, params, cancel=cancel, user=request_user(request)), plan.grammar, plan.reader)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        try:
            prompt, grammar = body.text(), body.format_grammar()
        except LLMOSError as exc:
            raise ApiError(exc, body.model, "completions") from exc
        return await _generate(request, body, "completions", lambda cancel, params: engine.chat.stream(
            body.model, [], params, cancel=cancel, raw_prompt=prompt, user=request_user(request)), grammar)

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest):
        try:
            texts = body.texts()
            result = await asyncio.to_thread(engine.embeddings.embed, body.model, texts)
            if body.dimensions is not None and result.vectors and body.dimensions != len(result.vectors[0]):
                raise InvalidInput(f"{body.model} makes {len(result.vectors[0])}-dimensional vectors; "
                                   f"dimensions={body.dimensions} cannot be given", "leave dimensions out")
        except LLMOSError as exc:
            raise ApiError(exc, body.model, "embeddings") from exc
        metrics.count_request(body.model, "embeddings", 200)
        metrics.embedded.labels(body.model).inc(len(texts))
        data = [{"object": "embedding", "index": i, "embedding": _encode_vector(v, body.encoding_format)}
                for i, v in enumerate(result.vectors)]
        # JSONResponse as is: FastAPI's encoder would walk every float of a 1,000 x 384 reply one by one
        return JSONResponse({"object": "list", "data": data, "model": body.model,
                             "usage": {"prompt_tokens": result.tokens, "total_tokens": result.tokens}})

    async def _generate(request: Request, body: _Sampling, endpoint: str, open_stream, grammar: str | None = None,
                        reader: Callable[[], ToolCallReader] | None = None):
        """Runs one reply; answers JSON, or server-sent events when body.stream is set. `grammar`: the shape the
        reply must have; `reader`: tools were offered, and the reply is read for their calls."""
        try:
            spec = engine.catalog.get(body.model)
            params = body.sampling(spec.sampling, grammar)
        except LLMOSError as exc:
            raise ApiError(exc, body.model, endpoint) from exc
        pump = EventPump(lambda cancel: open_stream(cancel, params), whole=not body.stream)
        watcher = asyncio.create_task(watch_disconnect(request.receive, pump))
        try:
            first = await pump.first()
        except Exception as exc:
            watcher.cancel()
            pump.stop()
            raise ApiError(exc, body.model, endpoint) from exc
        reply = _Reply(body.model, endpoint, first, reader() if reader else None)
        # A marker on the Monitor page's charts; written off the event loop, the reply need not wait for it.
        asyncio.get_running_loop().run_in_executor(None, lambda: engine.store.add_event(
            "api_request", body.model, f"API {endpoint} request for {body.model}" + (" (streamed)" * body.stream)))
        if body.stream:
            return StreamingResponse(_stream(pump, watcher, reply, body.include_usage),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        try:
            while (event := await pump.next()) is not None:
                reply.add(event)
        except Exception as exc:
            raise ApiError(exc, body.model, endpoint) from exc
        finally:
            watcher.cancel()
            pump.stop()
        metrics.count_request(body.model, endpoint, 200)
        return JSONResponse(reply.whole())

    async def _stream(pump: EventPump, watcher: asyncio.Task, reply: "_Reply", include_usage: bool
                      ) -> AsyncIterator[bytes]:
        status = 200
        try:
            if reply.endpoint == "chat":
                yield sse(reply.chunk(role=True))
            async for group in pump.groups(engine.settings.api_stream_interval_ms / 1000):
                text = "".join([reply.add(event) for event in group])
                if reply.reader is not None:
                    for chunk in reply.tool_chunks(text, end=group[-1].done):
                        yield chunk
                elif text:
                    yield reply.text_chunk(text)
            if reply.finish_reason == "cancelled":
                return   # the client left: nobody reads the rest
            yield sse(reply.chunk(finish=True))
            if include_usage:
                yield sse(reply.chunk(usage=True))
            yield sse("[DONE]")
        except Exception as exc:     # after the headers: the error travels as an event, as OpenAI sends it
            status, body, _ = describe(exc)
            yield sse(body)
        finally:
            watcher.cancel()
            pump.stop()   # a client that disconnected: the generation ends now and its slot is freed
            metrics.count_request(reply.model, reply.endpoint, status)

    return app


class _Reply:
    """One reply as it grows, in OpenAI's shapes (chat.completion, text_completion and their chunks)."""

    def __init__(self, model: str, endpoint: str, first: TokenEvent | None, reader: ToolCallReader | None = None):
        self.model, self.endpoint, self.reader = model, endpoint, reader
        self.id = ("chatcmpl-" if endpoint == "chat" else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.parts: list[str] = []
        self.last = first or TokenEvent()
        self.finish_reason: str | None = self.last.finish_reason
        # A text chunk is the same JSON each time but for its text: framed once here, so each chunk costs one
        # json.dumps of its text (from chunk()'s own output, so the two cannot drift apart).
        marker = json.dumps("\x00text")
        self._text_frame = sse(self.chunk(text="\x00text")).split(marker.encode())

    def add(self, event: TokenEvent) -> str:
        self.last = event
        if event.done:
            self.finish_reason = event.finish_reason
        if event.text:
            self.parts.append(event.text)
        return event.text

    @property
    def usage(self) -> dict:
        prompt, completion = self.last.prompt_tokens, self.last.tokens
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _finish(self) -> str:
        if self.finish_reason == "length":
            return "length"
        return "tool_calls" if self.reader is not None and self.reader.calls else "stop"

    def whole(self) -> dict:
        text = "".join(self.parts)
        if self.endpoint == "chat":
            message: dict = {"role": "assistant", "content": text}
            if self.reader is not None:
                events = self.reader.feed(text) + self.reader.finish()
                message["content"] = "".join(e[1] for e in events if e[0] == "text") or None
                if self.reader.calls:
                    message["tool_calls"] = [_call(c) for c in self.reader.calls]
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": self._finish()}
            kind = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": self._finish()}
            kind = "text_completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model,
                "system_fingerprint": None, "choices": [choice], "usage": self.usage}

    def tool_chunks(self, text: str, end: bool) -> list[bytes]:
        """A streamed reply that may hold tool calls, as OpenAI streams them: text as content deltas; a call's
        id and name once, then its arguments in pieces (the pieces of one group joined)."""
        events = self.reader.feed(text) + (self.reader.finish() if end else [])
        deltas: list[dict] = []
        for event in events:
            if event[0] == "text":
                if deltas and "content" in deltas[-1]:
                    deltas[-1]["content"] += event[1]
                else:
                    deltas.append({"content": event[1]})
            elif event[0] == "call":
                call = self.reader.calls[event[1]]
                deltas.append({"tool_calls": [{"index": event[1], **_call(call, arguments="")}]})
            else:
                last = deltas[-1]["tool_calls"][0] if deltas and "tool_calls" in deltas[-1] else None
                if last is not None and last["index"] == event[1]:
                    last["function"]["arguments"] += event[2]
                else:
                    deltas.append({"tool_calls": [{"index": event[1], "function": {"arguments": event[2]}}]})
        return [sse(self.chunk(delta=delta)) for delta in deltas]

    def text_chunk(self, text: str) -> bytes:
        """sse(self.chunk(text=text)), framed faster (once per token of a stream)."""
        before, after = self._text_frame
        return before + json.dumps(text).encode() + after

    def chunk(self, text: str = "", role: bool = False, finish: bool = False, usage: bool = False,
              delta: dict | None = None) -> dict:
        finish_reason = self._finish() if finish else None
        if usage:
            choices = []
        elif self.endpoint == "chat":
            if delta is None:
                delta = {"role": "assistant", "content": ""} if role else ({} if finish else {"content": text})
            choices = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
        else:
            choices = [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}]
        kind = "chat.completion.chunk" if self.endpoint == "chat" else "text_completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model,
                "system_fingerprint": None, "choices": choices, "usage": self.usage if usage else None}


def _call(call, arguments: str | None = None) -> dict:
    return {"id": call.id, "type": "function",
            "function": {"name": call.name, "arguments": call.arguments if arguments is None else arguments}}


def _encode_vector(vector: list[float], encoding: str):
    if encoding == "base64":   # float32, little-endian, as OpenAI sends them
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector
