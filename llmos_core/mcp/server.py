"""The MCP server: LLM OS's tools and resources on the `mcp` package's MCPServer, over stdio or streamable HTTP.

    python -m llmos_core mcp                   stdio, for a desktop client that starts it (cli/mcp.py)
    <the API's address>/mcp                    streamable HTTP, mounted in the API's app (api/server.py),
                                               behind the API's own key check (api/routes.py KeyCheck)

The tools' arguments are typed and bounded here (pydantic, checked by the SDK before a call); what a
type cannot say (names, paths, sizes of decoded content) is checked in operations.py. Sync tools run in
a worker thread (the SDK's), so a reply being generated never holds the event loop the API serves from.
An engine error reaches the client as a tool error with its hint, never as a traceback.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from pydantic import BaseModel, Field

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


def build_server(engine) -> MCPServer:
    """The MCP server over `engine`: one per engine (the stdio process's, or the API's)."""
    server = MCPServer("llmos", title="LLM OS", instructions=INSTRUCTIONS, log_level="WARNING")

    @server.tool(description="Ask a model for one reply. Give a prompt, or messages (a conversation). "
                             "Returns the reply's text and why it ended (stop or length).")
    def chat(model: Name,
             prompt: Annotated[Text | None, Field(description="one user message")] = None,
             messages: Annotated[list[Message] | None, Field(max_length=ops.MAX_MESSAGES)] = None,
             max_tokens: Annotated[int, Field(ge=1, le=ops.MAX_NEW_TOKENS)] = 256,
             temperature: Annotated[float | None, Field(ge=0, le=2, description="default: the model's")] = None,
             ) -> dict[str, Any]:
        with reported_as(ToolError):
            return ops.chat(engine, model, prompt, None if messages is None else [m.model_dump() for m in messages],
                            max_tokens, temperature)

    @server.tool(description="Translate a document (txt, md, srt, html, docx, pdf) into a target language. Give "
                             "path (a file inside the LLM OS data folder, relative to it), or content_base64 "
                             "with filename, or text. A text document comes back as text; other formats, or "
                             "save=true, are saved under the data folder and their path is returned. A long "
                             "document becomes a job: call translation_result once it has succeeded.")
    def translate(target: Annotated[str, Field(min_length=2, max_length=8, description="language code, e.g. de")],
                  path: Annotated[str | None, Field(max_length=1024)] = None,
                  content_base64: Annotated[str | None, Field(max_length=ops.MAX_DOCUMENT_BYTES * 4 // 3 + 4)] = None,
                  text: Annotated[str | None, Field(max_length=ops.MAX_DOCUMENT_BYTES)] = None,
                  filename: Annotated[str | None, Field(max_length=200)] = None,
                  source: Annotated[str, Field(max_length=8)] = "auto",
                  model: Name | None = None, save: bool = False) -> dict[str, Any]:
        with reported_as(ToolError):
            return ops.translate(engine, target, path, content_base64, text, filename, source, model, save)

    @server.tool(description="Save the document a finished translate job made under the data folder; returns "
                             "its path relative to the folder.")
    def translation_result(job_id: Annotated[int, Field(ge=1)]) -> dict[str, Any]:
        with reported_as(ToolError):
            return ops.translation_result(engine, job_id)

    @server.tool(description="Answer a question from a document collection, with numbered citations of the "
                             "passages used. When no passage matches, it says so and asks no model.")
    def ask(collection: Annotated[str, Field(min_length=1, max_length=64)],
            question: Annotated[str, Field(min_length=1, max_length=4000)],
            model: Name | None = None,
            top_k: Annotated[int, Field(ge=1, le=20)] = 5,
            max_tokens: Annotated[int, Field(ge=1, le=ops.MAX_NEW_TOKENS)] = 256) -> dict[str, Any]:
        with reported_as(ToolError):
            return ops.ask(engine, collection, question, model, top_k, max_tokens)

    @server.tool(description="Jobs (training, translation, indexing, export, benchmark), newest first.")
    def list_jobs(states: Annotated[list[str] | None, Field(max_length=10)] = None,
                  kind: Annotated[str | None, Field(max_length=40)] = None,
                  limit: Annotated[int, Field(ge=1, le=200)] = 50) -> list[dict[str, Any]]:
        with reported_as(ToolError):
            return ops.list_jobs(engine, states, kind, limit)

    @server.tool(description="Queue a job of a kind `python -m llmos_core jobs submit` offers (" +
                             ", ".join(sorted(ops.KINDS)) + "). File parameters must lie inside the data folder.")
    def submit_job(kind: Annotated[str, Field(max_length=40)], params: dict[str, Any],
                   priority: Annotated[int, Field(ge=-100, le=100)] = 0) -> dict[str, Any]:
        with reported_as(ToolError):
            return ops.submit_job(engine, kind, params, priority)

    @server.tool(description="The machine's latest figures, as the Monitor page shows them: CPU, memory, GPU, "
                             "the server process and the models in memory.")
    def monitor() -> dict[str, Any]:
        with reported_as(ToolError):
            return ops.monitor(engine)

    @server.resource("llmos://models", name="models", mime_type="application/json",
                     description="The model catalog, each with its task and status (loaded, ready, not fetched)")
    def models() -> list[dict]:
        with reported_as(ResourceError):
            return ops.models(engine)

    @server.resource("llmos://collections", name="collections", mime_type="application/json",
                     description="The document collections, with their counts of files and passages")
    def collections() -> list[dict]:
        with reported_as(ResourceError):
            return ops.collections(engine)

    @server.resource("llmos://collections/{name}", name="collection files", mime_type="application/json",
                     description="The files of one collection")
    def collection_files(name: str) -> list[dict]:
        with reported_as(ResourceError):
            return ops.collection_files(engine, name)

    return server


def http_route(engine, host: str):
    """The streamable HTTP endpoint, as a route for the API's app at /mcp, and the context that runs its
    sessions (entered in the API server's lifespan). DNS-rebinding protection on loopback, as the SDK sets."""
    server = build_server(engine)
    app = server.streamable_http_app(streamable_http_path="/mcp", host=host)
    return app.routes, server.session_manager.run
