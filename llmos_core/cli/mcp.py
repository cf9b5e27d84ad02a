"""`mcp`: serve LLM OS over the Model Context Protocol on stdin/stdout, for a desktop assistant that starts it.

    python -m llmos_core mcp
    python -m llmos_core --as NAME mcp         as that user: their collections, jobs and models only

It acts as the CLI's user (the local admin, or `--as NAME`) for every call; over HTTP, /mcp acts as each
request's key user instead. The client (Claude Desktop, an editor) starts this command and speaks MCP over
its pipes (README, "MCP").
It holds an engine of its own, as `serve` does: the data folder's primary when none runs (then its
scheduler runs the jobs submitted through it), else a second engine on the same data (its own models;
the jobs go to the primary's scheduler). The SDK points fd 1 at stderr while it serves, so nothing else
printed can corrupt the protocol. Streamable HTTP needs no command: the API serves it at /mcp.
"""
from __future__ import annotations

import sys

from . import acting_user
from ..engine import Engine
from ..settings import Settings


def register(subparsers) -> None:
    parser = subparsers.add_parser("mcp", help="serve LLM OS to MCP clients over stdio (see README, MCP); "
                                                "the API serves MCP over HTTP at /mcp")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..mcp.server import build_server   # the SDK only for this command: other commands start faster

    engine = Engine(Settings.from_env())
    try:
        user = acting_user(args, engine.store)
        role = "primary engine" if engine.is_primary else f"beside the primary engine (pid {engine.primary_pid()})"
        print(f"LLM OS MCP server on stdio, data folder {engine.home}, {role}, acting as {user.name}",
              file=sys.stderr, flush=True)
        build_server(engine, user=user).run("stdio")
    finally:
        engine.close()
    return 0
