"""A loopback stand-in for the Hugging Face Hub: just what ``wazo-stt download-model`` asks of it.

Two routes, shaped like the real Hub's:

- ``GET /api/models/{repo}/revision/{rev}?blobs=true``: the model info with its files' sizes, git blob ids and,
  for LFS files (here: ``*.onnx``), ``lfs.sha256``/``lfs.size`` (what ``HfApi.model_info(files_metadata=True)``
  reads);
- ``GET /{repo}/resolve/{rev}/{file}``: small files served directly with ``X-Repo-Commit`` and ``ETag``; LFS files
  redirected (302, ``X-Linked-Etag``/``X-Linked-Size``) to ``/cdn/{sha256}``, which honours ``Range`` as a CDN does.

Knobs a test turns: `tamper` serves other bytes than the metadata describes (a stale mirror), `stall_after` stops
sending a file after that many bytes until `release` is set (a download cut off mid-way), `status` answers every
request with that HTTP status, `ignore_range` answers a Range request with the whole file (200), as some proxies
do. Every request is recorded in `requests`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]

    @property
    def range(self) -> str | None:
        return self.headers.get("range")


@dataclass
class FakeHub:
    repos: dict[str, dict[str, bytes]]
    url: str = ""
    requests: list[Request] = field(default_factory=list)
    tamper: dict[str, bytes] = field(default_factory=dict)
    stall_after: dict[str, int] = field(default_factory=dict)
    stalled: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    status: int | None = None
    ignore_range: bool = False

    def file_requests(self) -> list[Request]:
        """Requests that fetch file bytes (not the model info)."""
        return [r for r in self.requests if r.method == "GET" and not r.path.startswith("/api/")]

    def _blob(self, sha256: str) -> tuple[str, bytes] | None:
        for files in self.repos.values():
            for name, data in files.items():
                if hashlib.sha256(data).hexdigest() == sha256:
                    return name, self.tamper.get(name, data)
        return None


def _is_lfs(name: str) -> bool:
    return name.endswith(".onnx")


def _model_info(repo_id: str, files: dict[str, bytes]) -> dict:
    siblings = []
    for name, data in files.items():
        sibling: dict = {"rfilename": name, "size": len(data), "blobId": git_blob_sha1(data)}
        if _is_lfs(name):
            sha256 = hashlib.sha256(data).hexdigest()
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {len(data)}\n"
            sibling["blobId"] = git_blob_sha1(pointer.encode())
            sibling["lfs"] = {"sha256": sha256, "size": len(data), "pointerSize": len(pointer)}
        siblings.append(sibling)
    return {"id": repo_id, "modelId": repo_id, "sha": COMMIT, "private": False, "siblings": siblings}


@contextlib.contextmanager
def fake_hub(repos: dict[str, dict[str, bytes]]) -> Iterator[FakeHub]:
    """Serve `repos` ({repo_id: {filename: bytes}}) on 127.0.0.1; yields the hub with its `url` set."""
    hub = FakeHub(repos)
    resolve = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
    info = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/revision/(?P<rev>[^/]+)$")

    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self._handle(body=False)

        def do_GET(self) -> None:
            self._handle(body=True)

        def _handle(self, body: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            hub.requests.append(Request(self.command, path, {k.lower(): v for k, v in self.headers.items()}))
            try:
                if hub.status is not None:
                    self._send(hub.status, b'{"error": "forced"}', {"Content-Type": "application/json"}, body)
                elif m := info.match(path):
                    files = hub.repos.get(m["repo"])
                    if files is None:
                        self._send(404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"}, body)
                        return
                    payload = json.dumps(_model_info(m["repo"], files)).encode()
                    self._send(200, payload, {"Content-Type": "application/json"}, body)
                elif m := resolve.match(path):
                    self._resolve(m["repo"], m["file"], body)
                elif path.startswith("/cdn/"):
                    found = hub._blob(path.removeprefix("/cdn/"))
                    if found is None:
                        self._send(404, b"no such blob", {}, body)
                    else:
                        self._serve_bytes(*found, body)
                else:
                    self._send(404, b"not found", {}, body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away (a test interrupting it): nothing to answer

        def _resolve(self, repo: str, name: str, body: bool) -> None:
            files = hub.repos.get(repo, {})
            if name not in files:
                self._send(404, b"Entry not found", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT}, body)
                return
            data = files[name]
            if _is_lfs(name):
                sha256 = hashlib.sha256(data).hexdigest()
                headers = {
                    "Location": f"{hub.url}/cdn/{sha256}",
                    "X-Repo-Commit": COMMIT,
                    "X-Linked-Etag": f'"{sha256}"',
                    "X-Linked-Size": str(len(data)),
                    "ETag": f'"{git_blob_sha1(data)}"',
                }
                self._send(302, b"", headers, body)
                return
            self._serve_bytes(name, hub.tamper.get(name, data), body, {"X-Repo-Commit": COMMIT})

        def _serve_bytes(self, name: str, data: bytes, body: bool, extra: dict[str, str] | None = None) -> None:
            start = 0
            status = 200
            headers = {"Accept-Ranges": "bytes", "ETag": f'"{git_blob_sha1(data)}"', **(extra or {})}
            if not hub.ignore_range and (m := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))):
                start = int(m[1])
                if start >= len(data):
                    self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"}, body)
                    return
                status = 206
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            chunk = data[start:]
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(chunk)))
            self.end_headers()
            if not body:
                return
            stall = hub.stall_after.get(name)
            if stall is not None and start < stall:
                self.wfile.write(chunk[: stall - start])
                self.wfile.flush()
                hub.stalled.set()
                hub.release.wait(30)
                return  # then hang up short of Content-Length, as a dropped connection does
            self.wfile.write(chunk)

        def _send(self, status: int, payload: bytes, headers: dict[str, str], body: bool) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if body:
                self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        hub.release.set()
        server.shutdown()
        server.server_close()
