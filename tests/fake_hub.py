"""A fake Hugging Face hub on loopback: serves a local model folder under a repo id, enough for
`model_info` and `hf_hub_download`. Tests the real download path without the network."""
from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0" * 40


def serve(repos: dict[str, Path]) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _file(self):
            # /{owner}/{name}/resolve/{revision}/{filename}
            parts = self.path.split("?")[0].strip("/").split("/")
            if len(parts) >= 5 and parts[2] == "resolve":
                repo, filename = "/".join(parts[:2]), "/".join(parts[4:])
                folder = repos.get(repo)
                if folder and (folder / filename).is_file():
                    return folder / filename
            return None

        def _send_file_headers(self, path: Path):
            data = path.read_bytes()
            etag = hashlib.sha256(data).hexdigest() if path.suffix == ".safetensors" else hashlib.sha1(data).hexdigest()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("ETag", f'"{etag}"')
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            return data

        def _json(self, status: int, obj: dict, error_code: str | None = None):
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
            path = self._file()
            if path is None:
                return self._entry_not_found()
            self._send_file_headers(path)

        def do_GET(self):
            if self.path.startswith("/api/models/"):
                repo = "/".join(self.path.split("?")[0][len("/api/models/"):].split("/")[:2])
                folder = repos.get(repo)
                if folder is None:
                    return self._json(404, {"error": "Repository not found"}, "RepoNotFound")
                siblings = [{"rfilename": p.name, "size": p.stat().st_size} for p in sorted(folder.iterdir())
                            if p.is_file()]
                return self._json(200, {"id": repo, "modelId": repo, "sha": COMMIT, "siblings": siblings,
                                        "private": False, "tags": []})
            path = self._file()
            if path is None:
                return self._entry_not_found()
            self.wfile.write(self._send_file_headers(path))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
