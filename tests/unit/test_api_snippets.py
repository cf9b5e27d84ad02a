"""What the Models page's "Use from code" shows, and `serve --api` from the command line."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

from llmos_core.api.snippets import api_access, curl_snippet, openai_snippet
from llmos_core.models.catalog import CAUSAL_LM, EMBEDDING

ROOT = Path(__file__).resolve().parents[2]


def fake_engine(api=None, api_error="", api_key=None):
    return SimpleNamespace(api=api, api_error=api_error, settings=SimpleNamespace(api_key=api_key))


def test_snippets_for_a_running_api_with_a_key():
    access = api_access(fake_engine(SimpleNamespace(url="http://127.0.0.1:8123", api_key="k"), api_key="k"))
    assert access.running and access.base_url == "http://127.0.0.1:8123/v1" and access.key_required
    curl = curl_snippet(access, "smollm2-135m-instruct", CAUSAL_LM)
    assert "http://127.0.0.1:8123/v1/chat/completions" in curl and "Bearer $LLMOS_API_KEY" in curl
    body = json.loads(re.search(r"-d '(.*)'", curl).group(1))
    assert body["model"] == "smollm2-135m-instruct" and body["stream"] is True
    code = openai_snippet(access, "smollm2-135m-instruct", CAUSAL_LM)
    compile(code, "snippet", "exec")
    assert 'os.environ["LLMOS_API_KEY"]' in code and "k\"" not in code   # the key itself is never shown


def test_snippets_when_the_api_is_off_say_how_to_start_it():
    access = api_access(fake_engine())
    assert not access.running and "LLMOS_API_PORT" in access.note
    assert "/v1/embeddings" in curl_snippet(access, "all-minilm-l6-v2", EMBEDDING)
    code = openai_snippet(access, "all-minilm-l6-v2", EMBEDDING)
    compile(code, "snippet", "exec")
    assert "embeddings.create" in code and 'api_key="none"' in code
    failed = api_access(fake_engine(api_error="port 8000 is taken"))
    assert "port 8000 is taken" in failed.note


def test_serve_api_refuses_the_network_without_a_key_and_serves_loopback(home):
    env = {**os.environ, "LLMOS_API_KEY": ""}
    refused = subprocess.run([sys.executable, "-m", "llmos_core", "serve", "--api", "--host", "0.0.0.0"], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "LLMOS_API_KEY" in refused.stderr and "Traceback" not in refused.stderr
    server = subprocess.Popen([sys.executable, "-m", "llmos_core", "serve", "--api", "--port", "0"], cwd=ROOT,
                              env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline, url = time.monotonic() + 120, None
        while url is None and time.monotonic() < deadline:
            line = server.stderr.readline()
            found = re.search(r"API on (http://127\.0\.0\.1:\d+)/v1", line)
            url = found.group(1) if found else None
        assert url, "serve --api did not print its address"
        with urllib.request.urlopen(f"{url}/health", timeout=10) as response:
            assert json.loads(response.read())["status"] == "ok"
    finally:
        subprocess.run([sys.executable, "-m", "llmos_core", "serve", "--stop"], cwd=ROOT, env=env, timeout=60)
        server.wait(timeout=60)
