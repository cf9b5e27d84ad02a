"""What the Models page's "Use from code" shows: where the API is, whether it wants a key, and snippets.

The key itself is never put in a snippet: it reads from the environment, so a screenshot leaks nothing.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from ..models.catalog import EMBEDDING


@dataclass
class ApiAccess:
    running: bool
    base_url: str          # ends in /v1; empty when not running
    key_required: bool
    note: str              # how to start it, or why it did not start


def api_access(engine) -> ApiAccess:
    if engine.api is not None:
        return ApiAccess(True, f"{engine.api.url}/v1", bool(engine.api.api_key),
                         f"metrics for Prometheus at {engine.api.url}/metrics")
    if engine.api_error:
        return ApiAccess(False, "", bool(engine.settings.api_key), f"the API did not start: {engine.api_error}")
    return ApiAccess(False, "", bool(engine.settings.api_key),
                     "the API is off: start the app with LLMOS_API_PORT=8000, or run "
                     "`python -m llmos_core serve --api`")


def curl_snippet(access: ApiAccess, model: str, task: str) -> str:
    base = access.base_url or "http://127.0.0.1:8000/v1"
    auth = ' \\\n  -H "Authorization: Bearer $LLMOS_API_KEY"' if access.key_required else ""
    if task == EMBEDDING:
        path, body = "embeddings", {"model": model, "input": ["The quick brown fox.", "A lazy dog."]}
    else:
        path, body = "chat/completions", {"model": model, "stream": True,
                                          "messages": [{"role": "user", "content": "Name three colours."}]}
    return (f"curl -N {base}/{path}{auth} \\\n  -H \"Content-Type: application/json\" \\\n"
            f"  -d '{json.dumps(body)}'")


def openai_snippet(access: ApiAccess, model: str, task: str) -> str:
    base = access.base_url or "http://127.0.0.1:8000/v1"
    key = 'os.environ["LLMOS_API_KEY"]' if access.key_required else '"none"'
    head = f'import os\nfrom openai import OpenAI\n\nclient = OpenAI(base_url="{base}", api_key={key})\n'
    if task == EMBEDDING:
        return head + (f'result = client.embeddings.create(model="{model}", input=["The quick brown fox."])\n'
                       "print(len(result.data[0].embedding))\n")
    return head + (f'stream = client.chat.completions.create(\n    model="{model}",\n'
                   '    messages=[{"role": "user", "content": "Name three colours."}],\n    stream=True,\n)\n'
                   "for chunk in stream:\n    print(chunk.choices[0].delta.content or \"\", end=\"\", flush=True)\n")
