"""A fake Hugging Face hub on loopback: serves a local model folder under a repo id, enough for
`model_info` and `hf_hub_download`. Tests the real download path without the network.

For the model browser, a repo may also be a dict: {"files": {name: bytes (served) or int (listed with that
size only)}, "info": {extra model_info fields: gated, safetensors, gguf, cardData, downloads, likes,
pipeline_tag, tags}}. `/api/models?search=` lists the repos whose id holds every word of the search.
A gated repo ("gated": "manual") refuses its files with 401 GatedRepo, as the hub does without a token.
`delay_s` holds every /api answer that long (a hub that times out)."""
from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

COMMIT = "0" * 40


def _files(repo) -> dict[str, bytes | int]:
    if isinstance(repo, dict):
        return dict(repo.get("files", {}))
    return {p.name: p for p in sorted(repo.iterdir()) if p.is_file()}


def _size(value) -> int:
    return value.stat().st_size if isinstance(value, Path) else len(value) if isinstance(value, bytes) else int(value)


def serve(repos: dict, delay_s: float = 0.0) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _file(self):
            # /{owner}/{name}/resolve/{revision}/{filename}
            parts = self.path.split("?")[0].strip("/").split("/")
            if len(parts) >= 5 and parts[2] == "resolve":
                repo, filename = "/".join(parts[:2]), "/".join(parts[4:])
                value = _files(repos[repo]).get(filename) if repo in repos else None
                if isinstance(value, (Path, bytes)):
                    return value
            return None

        def _gated(self) -> bool:
            parts = self.path.split("?")[0].strip("/").split("/")
            repo = repos.get("/".join(parts[:2]))
            if isinstance(repo, dict) and repo.get("info", {}).get("gated"):
                self._json(401, {"error": "Access to this model is restricted"}, "GatedRepo")
                return True
            return False

        def _send_file_headers(self, path):
            data = path.read_bytes() if isinstance(path, Path) else path
            etag = hashlib.sha256(data).hexdigest() if str(path).endswith(".safetensors") else hashlib.sha1(data).hexdigest()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("ETag", f'"{etag}"')
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            return data

        def _json(self, status: int, obj, error_code: str | None = None):
            body = json.dumps(obj).encode()
            self.send_response(status)
            if error_code:
                self.send_header("X-Error-Code", error_code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _entry_not_found(self):
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.end_headers()

        def do_HEAD(self):
            if self._gated():
                return
            path = self._file()
            if path is None:
                return self._entry_not_found()
            self._send_file_headers(path)

        def _info(self, repo: str) -> dict:
            siblings = [{"rfilename": name, "size": _size(value)} for name, value in _files(repos[repo]).items()]
            extra = repos[repo].get("info", {}) if isinstance(repos[repo], dict) else {}
            return {"id": repo, "modelId": repo, "sha": COMMIT, "siblings": siblings, "private": False, "tags": [],
                    "downloads": 0, "likes": 0, **extra}

        def do_GET(self):
            if self.path.startswith("/api/"):
                time.sleep(delay_s)
            if self.path.startswith("/api/models?") or self.path == "/api/models":
                query = parse_qs(urlsplit(self.path).query)
                words = " ".join(query.get("search", [""])).lower().split()
                limit = int(query.get("limit", ["1000"])[0])
                found = [self._info(repo) for repo in repos if all(w in repo.lower() for w in words)]
                task = query.get("pipeline_tag", [""])[0]
                found = [f for f in found if not task or f.get("pipeline_tag") == task]
                found.sort(key=lambda f: -f["downloads"])
                return self._json(200, found[:limit])
            if self.path.startswith("/api/models/"):
                repo = "/".join(self.path.split("?")[0][len("/api/models/"):].split("/")[:2])
                if repo not in repos:
                    return self._json(404, {"error": "Repository not found"}, "RepoNotFound")
                return self._json(200, self._info(repo))
            if self._gated():
                return
            path = self._file()
            if path is None:
                return self._entry_not_found()
            self.wfile.write(self._send_file_headers(path))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
