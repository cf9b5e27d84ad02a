"""LLM OS over the Model Context Protocol: the tools and resources a desktop assistant (or any MCP client) uses.

  operations.py  what each tool and resource does, over the use cases, with every argument checked
  server.py      the `mcp` package's MCPServer with those tools and resources; the streamable HTTP route
                 the API mounts at /mcp

A front door like the CLI and the API: it imports the use cases and the engine, nothing below imports it.
"""
