"""The MCP server: LLM OS's tools and resources on the `mcp` package's MCPServer, over stdio or streamable HTTP.

    python -m llmos_core mcp                   stdio, for a desktop client that starts it (cli/mcp.py)
    <the API's address>/mcp                    streamable HTTP, mounted in the API's app (api/server.py),
                                               behind the API's own key check (api/auth.py UserAuth)

Who acts: over stdio, the CLI's user (the local admin, or `--as NAME`), fixed for the process; over HTTP,
each request's key user, which UserAuth put in the request's state (`llmos_user`) and each tool and
resource reads from the SDK's request context. An HTTP call without one is refused, never run as an admin.
Every operation is scoped to that user (operations.py): another user's things read as missing.

The tools' arguments are typed and bounded here (pydantic, checked by the SDK before a call); what a
type cannot say (names, paths, sizes of decoded content) is checked in operations.py. Sync tools run in
a worker thread (the SDK's), so a reply being generated never holds the event loop the API serves from.
An engine error reaches the client as a tool error with its hint, never as a traceback.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from pydantic import BaseModel, Field

from ..accounts import User
from ..errors import LLMOSError
from . import operations as ops

INSTRUCTIONS = ("LLM OS runs language models on this machine. Chat with a model, translate a document, ask a "
                "document collection (answers cite their passages), and see jobs and the machine's figures. "
                "Read llmos://models for the model names and llmos://collections for the collections.")

Name = Annotated[str, Field(min_length=1, max_length=120)]
Text = Annotated[str, Field(max_length=ops.MAX_TEXT_CHARS)]


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: Text


@contextmanager
def reported_as(error: type[Exception]):
    """An engine error -> the SDK's ToolError or ResourceError, which the client shows (message and what to
    do) and the SDK logs in one line; anything else stays a crash, logged with its traceback."""
    try:
        yield
    except LLMOSError as exc:
        raise error(exc.message + (f" (what to do: {exc.hint})" if exc.hint else "")) from exc


# The context of the resource read in progress: the SDK hands a Context to tools and resource templates, but
# not to a static resource's function, so _Server.read_resource keeps it here for them.
_reading: ContextVar[Context | None] = ContextVar("llmos_mcp_reading", default=None)


class _Server(MCPServer):
    async def read_resource(self, uri, context=None):
        token = _reading.set(context)
        try:
            return await super().read_resource(uri, context)
        finally:
            _reading.reset(token)


def request_user(ctx: Context | None) -> User | None:
    """The user UserAuth found for the HTTP request carrying this call; None when there is none."""
    try:
        request = ctx.request_context.request if ctx is not None else None
    except ValueError:      # no request context at all
        return None
    state = getattr(request, "state", None)
    user = getattr(state, "llmos_user", None) if state is not None else None
    return user if isinstance(user, User) else None


def build_server(engine, *, user: User | None) -> MCPServer:
    """The MCP server over `engine`: one per engine (the stdio process's, or the API's). `user`: who acts
    for every call (stdio: the CLI's user); None: each HTTP request's key user, a call without one refused."""
    server = _Server("llmos", title="LLM OS", instructions=INSTRUCTIONS, log_level="WARNING")

    def actor(ctx: Context | None, error: type[Exception] = ToolError) -> User:
        found = user if user is not None else request_user(ctx)
        if found is None:
            raise error("this MCP request carries no LLM OS user (what to do: send an API key, "
                        "Authorization: Bearer <key>, to the API's /mcp)")
        return found

    @server.tool(description="Ask a model for one reply. Give a prompt, or messages (a conversation). "
                             "Returns the reply's text and why it ended (stop or length).")
    def chat(model: Name,
             prompt: Annotated[Text | None, Field(description="one user message")] = None,
             messages: Annotated[list[Message] | None, Field(max_length=ops.MAX_MESSAGES)] = None,
             max_tokens: Annotated[int, Field(ge=1, le=ops.MAX_NEW_TOKENS)] = 256,
             temperature: Annotated[float | None, Field(ge=0, le=2, description="default: the model's")] = None,
             ctx: Context = None) -> dict[str, Any]:
        with reported_as(ToolError):
            conversation = None if messages is None else [m.model_dump() for m in messages]
            return ops.chat(engine, actor(ctx), model, prompt, conversation, max_tokens, temperature)

    @server.tool(description="Translate a document (txt, md, srt, html, docx, pdf) into a target language. Give "
                             "path (a file inside the LLM OS data folder, relative to it; for a non-admin user, "
                             "their own folder in it), or content_base64 with filename, or text. A text "
                             "document comes back as text; other formats, or save=true, are saved there and "
                             "their path is returned. A long document becomes a job: call translation_result "
                             "once it has succeeded.")
    def translate(target: Annotated[str, Field(min_length=2, max_length=8, description="language code, e.g. de")],
                  path: Annotated[str | None, Field(max_length=1024)] = None,
                  content_base64: Annotated[str | None, Field(max_length=ops.MAX_DOCUMENT_BYTES * 4 // 3 + 4)] = None,
                  text: Annotated[str | None, Field(max_length=ops.MAX_DOCUMENT_BYTES)] = None,
                  filename: Annotated[str | None, Field(max_length=200)] = None,
                  source: Annotated[str, Field(max_length=8)] = "auto",
                  model: Name | None = None, save: bool = False, ctx: Context = None) -> dict[str, Any]:
        with reported_as(ToolError):
            return ops.translate(engine, actor(ctx), target, path, content_base64, text, filename, source, model,
                                 save)

    @server.tool(description="Save the document a finished translate job made under the data folder (a "
                             "non-admin's own folder in it); returns its path relative to that folder.")
    def translation_result(job_id: Annotated[int, Field(ge=1)], ctx: Context = None) -> dict[str, Any]:
        with reported_as(ToolError):
            return ops.translation_result(engine, actor(ctx), job_id)

    @server.tool(description="Answer a question from a document collection, with numbered citations of the "
                             "passages used. When no passage matches, it says so and asks no model.")
    def ask(collection: Annotated[str, Field(min_length=1, max_length=64)],
            question: Annotated[str, Field(min_length=1, max_length=4000)],
            model: Name | None = None,
            top_k: Annotated[int, Field(ge=1, le=20)] = 5,
            max_tokens: Annotated[int, Field(ge=1, le=ops.MAX_NEW_TOKENS)] = 256,
            ctx: Context = None) -> dict[str, Any]:
        with reported_as(ToolError):
            return ops.ask(engine, actor(ctx), collection, question, model, top_k, max_tokens)

    @server.tool(description="Jobs (training, translation, indexing, export, benchmark), newest first.")
    def list_jobs(states: Annotated[list[str] | None, Field(max_length=10)] = None,
                  kind: Annotated[str | None, Field(max_length=40)] = None,
                  limit: Annotated[int, Field(ge=1, le=200)] = 50, ctx: Context = None) -> list[dict[str, Any]]:
        with reported_as(ToolError):
            return ops.list_jobs(engine, actor(ctx), states, kind, limit)

    @server.tool(description="Queue a job of a kind `python -m llmos_core jobs submit` offers (" +
                             ", ".join(sorted(ops.KINDS)) + "). File parameters must lie inside the data folder "
                             "(a non-admin's own folder in it).")
    def submit_job(kind: Annotated[str, Field(max_length=40)], params: dict[str, Any],
                   priority: Annotated[int, Field(ge=-100, le=100)] = 0, ctx: Context = None) -> dict[str, Any]:
        with reported_as(ToolError):
            return ops.submit_job(engine, actor(ctx), kind, params, priority)

    @server.tool(description="The machine's latest figures, as the Monitor page shows them: CPU, memory, GPU, "
                             "the server process and the models in memory.")
    def monitor(ctx: Context = None) -> dict[str, Any]:
        actor(ctx)   # the machine's figures, as the Monitor page shows any user; still only to a known one
        with reported_as(ToolError):
            return ops.monitor(engine)

    @server.resource("llmos://models", name="models", mime_type="application/json",
                     description="The model catalog, each with its task and status (loaded, ready, not fetched)")
    async def models() -> list[dict]:   # async: it runs in the read's task, where _reading holds its context
        who = actor(_reading.get(), ResourceError)
        with reported_as(ResourceError):
            return await anyio.to_thread.run_sync(ops.models, engine, who)

    @server.resource("llmos://collections", name="collections", mime_type="application/json",
                     description="The document collections, with their counts of files and passages")
    async def collections() -> list[dict]:
        who = actor(_reading.get(), ResourceError)
        with reported_as(ResourceError):
            return await anyio.to_thread.run_sync(ops.collections, engine, who)

    @server.resource("llmos://collections/{name}", name="collection files", mime_type="application/json",
                     description="The files of one collection")
    def collection_files(name: str, ctx: Context = None) -> list[dict]:
        with reported_as(ResourceError):
            return ops.collection_files(engine, actor(ctx, ResourceError), name)

    return server


def http_route(engine, host: str):
    """The streamable HTTP endpoint, as a route for the API's app at /mcp, and the context that runs its
    sessions (entered in the API server's lifespan). DNS-rebinding protection on loopback, as the SDK sets."""
    server = build_server(engine, user=None)   # each request's key user
    app = server.streamable_http_app(streamable_http_path="/mcp", host=host)
    return app.routes, server.session_manager.run
