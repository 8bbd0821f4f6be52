"""A small Hugging Face Hub on 127.0.0.1, for running the real `huggingface_hub` client in tests.

It answers the requests huggingface_hub 2.4 makes for `model_info(files_metadata=True)` and
`hf_hub_download`, as the real Hub does:

- `GET /api/models/{org}/{name}/revision/{rev}?blobs=true`: JSON with `sha` (the commit) and
  `siblings` (`rfilename`, `size`, `blobId`, `lfs: {sha256, size, pointerSize}`);
- `HEAD|GET /{org}/{name}/resolve/{rev}/{path}`: small files straight away (`ETag` = git blob id,
  `Content-Length`, `X-Repo-Commit`); LFS files (weights, `tokenizer.model`) with a 302 to a
  second server, the "CDN", carrying `X-Linked-Etag` (the sha256), `X-Linked-Size` and
  `X-Repo-Commit`. No `X-Xet-*` headers, so the client downloads over plain HTTP;
- the CDN (`/cdn/{sha256}`) and plain files (`/files/{name}`, like ImageBind's official URL) with
  HTTP Range (206 + `Content-Range`);
- errors with the Hub's `X-Error-Code` and `X-Error-Message`: an unknown repo is a 401 `RepoNotFound`
  (the Hub answers 401 so as not to reveal private repos), a missing file a 404 `EntryNotFound`, a
  token the Hub does not know a 401 "Invalid credentials in Authorization header";
- a gated repo as the real Hub treats it: its file list (`model_info`, with `gated: "manual"`) is open
  to anyone, while `GET /api/models/{repo}/auth-check` and every download answer 401 `GatedRepo`
  without a token and 403 `GatedRepo` with the token of an account that has no access (`other_tokens`);
- a disabled repo: 403 "Access to this resource is disabled." to everything;
- files stored with Xet (`Repo.xet`): the resolve redirect also carries `X-Xet-Hash` and a `xet-auth`
  link, whose token endpoint sends the client to this server's Xet CAS (`/xet-cas`), which refuses
  every reconstruction (`xet_cas_status`) — the real `hf_xet` fails there, as on a broken Xet
  transfer; with `HF_HUB_DISABLE_XET=1` the client follows the redirect to the CDN instead.

Faults for tests: `cut_once[path] = n` sends n bytes of the body then drops the connection (once);
`fail[path]` (or `fail["GET /path"]`) `= [status, ...]` answers those statuses to the next requests
(0: serve normally; 429 comes with `Retry-After`). Every request is logged.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".model")
DISABLED = "Access to this resource is disabled."
INVALID_TOKEN = "Invalid credentials in Authorization header"


@dataclass
class Repo:
    files: dict[str, bytes]
    gated: bool = False
    disabled: bool = False
    xet: set[str] = field(default_factory=set)  # files stored with Xet

    @property
    def commit(self) -> str:
        digest = hashlib.sha1()
        for name in sorted(self.files):
            digest.update(name.encode() + hashlib.sha256(self.files[name]).digest())
        return digest.hexdigest()


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Request:
    server: str  # "hub" or "cdn"
    method: str
    path: str
    range: str | None
    authorization: str | None


@dataclass
class FakeHub:
    token: str = "hf_test_token"  # an account with access to every gated repo
    other_tokens: tuple[str, ...] = ("hf_no_access_token",)  # valid accounts that never accepted the gated terms
    xet_cas_status: int = 403
    repos: dict[str, Repo] = field(default_factory=dict)
    plain_files: dict[str, bytes] = field(default_factory=dict)
    cut_once: dict[str, int] = field(default_factory=dict)  # request path (no query) -> bytes sent before the cut
    fail: dict[str, list[int]] = field(default_factory=dict)  # "[METHOD ]path" -> statuses for the next requests (0: serve)
    log: list[Request] = field(default_factory=list)
    rate: float | None = None  # bytes per second each download is sent at (None: at once), so that progress can be watched
    gate: threading.Event | None = None  # when given, no download's bytes are sent before it is set

    # --- content ---

    def add_repo(self, repo_id: str, files: dict[str, bytes], **flags: object) -> Repo:
        self.repos[repo_id] = Repo(dict(files), **flags)  # type: ignore[arg-type]
        return self.repos[repo_id]

    def add_folder(self, repo_id: str, folder: Path, extra: dict[str, bytes] | None = None, **flags: object) -> Repo:
        files = {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(Path(folder).rglob("*")) if path.is_file()}
        return self.add_repo(repo_id, files | (extra or {}), **flags)

    def add_url(self, name: str, data: bytes) -> str:
        self.plain_files[name] = data
        return f"{self.cdn}/files/{name}"

    # --- servers ---

    def start(self) -> FakeHub:
        self._hub = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, "hub"))
        self._cdn = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, "cdn"))
        for server in (self._hub, self._cdn):
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        for server in (self._hub, self._cdn):
            server.shutdown()
            server.server_close()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._hub.server_address[1]}"

    @property
    def cdn(self) -> str:
        return f"http://127.0.0.1:{self._cdn.server_address[1]}"

    def requests(self, method: str | None = None, path_contains: str = "") -> list[Request]:
        return [r for r in self.log if (method is None or r.method == method) and path_contains in r.path]

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler(hub: FakeHub, role: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet
            pass

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        # --- routing ---

        def _serve(self, body: bool) -> None:
            path = self.path.split("?", 1)[0]
            hub.log.append(Request(role, self.command, path, self.headers.get("Range"), self.headers.get("Authorization")))
            for key in (f"{self.command} {path}", path):
                if hub.fail.get(key):
                    status = hub.fail[key].pop(0)
                    if status:
                        self._error(status, None, "injected failure")
                        return
                    break
            if role == "cdn":
                if path.startswith("/cdn/"):
                    blob = next(
                        (data for repo in hub.repos.values() for data in repo.files.values() if hashlib.sha256(data).hexdigest() == path[5:]), None
                    )
                    return self._bytes(blob, body) if blob is not None else self._error(404, None, "no such blob")
                if path.startswith("/xet-cas/"):
                    return self._error(hub.xet_cas_status, None, "the fake Xet CAS serves no reconstructions")
                if path.startswith("/files/") and path[7:] in hub.plain_files:
                    return self._bytes(hub.plain_files[path[7:]], body, {"ETag": f'"{hashlib.md5(hub.plain_files[path[7:]]).hexdigest()}"'})
                return self._error(404, None, "not found")
            authorization = self.headers.get("Authorization")
            if authorization and authorization.removeprefix("Bearer ") not in (hub.token, *hub.other_tokens):
                return self._error(401, None, INVALID_TOKEN)
            if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path):
                return self._info(match.group(1), match.group(2) or "main", body)
            if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)/auth-check", path):
                if self._repo(match.group(1), "main") is not None:
                    self._bytes(b"{}", body, {"Content-Type": "application/json"}, ranges=False)
                return None
            if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)/xet-read-token/([^/]+)", path):
                return self._xet_token(match.group(1), match.group(2), body)
            if match := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
                return self._resolve(match.group(1), match.group(2), match.group(3), body)
            self._error(404, None, "not found")

        def _repo(self, repo_id: str, revision: str, listing: bool = False) -> Repo | None:
            """The repo if this request may read it (`listing`: its file list, open even when gated), else an error sent."""
            repo = hub.repos.get(repo_id)
            if repo is None:
                self._error(401, "RepoNotFound", "Repository not found")
                return None
            if repo.disabled:
                self._error(403, None, DISABLED)
                return None
            authorization = self.headers.get("Authorization")
            if repo.gated and not listing and authorization != f"Bearer {hub.token}":
                if authorization is None:
                    self._error(
                        401,
                        "GatedRepo",
                        f"Access to model {repo_id} is restricted. You must have access to it and be authenticated to access it. Please log in.",
                    )
                else:
                    self._error(
                        403,
                        "GatedRepo",
                        f"Access to model {repo_id} is restricted and you are not in the authorized list. Visit https://huggingface.co/{repo_id} to ask for access.",
                    )
                return None
            if revision not in ("main", repo.commit):
                self._error(404, "RevisionNotFound", "Invalid rev id")
                return None
            return repo

        def _info(self, repo_id: str, revision: str, body: bool) -> None:
            repo = self._repo(repo_id, revision, listing=True)
            if repo is None:
                return
            siblings = []
            for name, data in sorted(repo.files.items()):
                sibling = {"rfilename": name, "size": len(data), "blobId": git_blob_id(data)}
                if name.endswith(LFS_SUFFIXES):
                    sibling["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
                siblings.append(sibling)
            info = {
                "id": repo_id,
                "modelId": repo_id,
                "sha": repo.commit,
                "private": False,
                "gated": "manual" if repo.gated else False,
                "siblings": siblings,
            }
            payload = json.dumps(info).encode()
            self._bytes(payload, body, {"Content-Type": "application/json"}, ranges=False)

        def _resolve(self, repo_id: str, revision: str, name: str, body: bool) -> None:
            repo = self._repo(repo_id, revision)
            if repo is None:
                return
            if name not in repo.files:
                self._error(404, "EntryNotFound", f'{name} does not exist on "{revision}"', {"X-Repo-Commit": repo.commit})
                return
            data = repo.files[name]
            headers = {"X-Repo-Commit": repo.commit}
            if name.endswith(LFS_SUFFIXES):
                sha = hashlib.sha256(data).hexdigest()
                self.send_response(302)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("ETag", f'"{git_blob_id(data)}"')
                self.send_header("X-Linked-Etag", f'"{sha}"')
                self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("Location", f"{hub.cdn}/cdn/{sha}")
                if name in repo.xet:
                    self.send_header("X-Xet-Hash", sha)
                    self.send_header("Link", f'<{hub.endpoint}/api/models/{repo_id}/xet-read-token/{repo.commit}>; rel="xet-auth"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self._bytes(data, body, headers | {"ETag": f'"{git_blob_id(data)}"'})

        def _xet_token(self, repo_id: str, revision: str, body: bool) -> None:
            if self._repo(repo_id, revision) is None:
                return
            headers = {
                "X-Xet-Cas-Url": f"{hub.cdn}/xet-cas",
                "X-Xet-Access-Token": "xet-test",
                "X-Xet-Token-Expiration": str(int(time.time()) + 3600),
            }
            self._bytes(b"", body, headers, ranges=False)

        # --- responses ---

        def _bytes(self, data: bytes, body: bool, headers: dict | None = None, ranges: bool = True) -> None:
            start, status = 0, 200
            requested = self.headers.get("Range") if ranges else None
            if requested and (match := re.fullmatch(r"bytes=(\d+)-(\d*)", requested)):
                start = int(match.group(1))
                end = int(match.group(2)) if match.group(2) else len(data) - 1
                if start >= len(data):
                    return self._error(416, None, "range not satisfiable", {"Content-Range": f"bytes */{len(data)}"})
                data_out, status = data[start : end + 1], 206
            else:
                data_out = data
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{start + len(data_out) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(data_out)))
            self.end_headers()
            if not body:
                return
            path = self.path.split("?", 1)[0]
            cut = hub.cut_once.pop(path, None)
            if cut is not None:
                self.wfile.write(data_out[:cut])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if hub.gate is not None:
                hub.gate.wait(120)
            if hub.rate is None:
                self.wfile.write(data_out)
                return
            step = 65536
            for offset in range(0, len(data_out), step):
                self.wfile.write(data_out[offset : offset + step])
                self.wfile.flush()
                time.sleep(step / hub.rate)

        def _error(self, status: int, code: str | None, message: str, headers: dict | None = None) -> None:
            payload = json.dumps({"error": message}).encode()
            self.send_response(status)
            if code:
                self.send_header("X-Error-Code", code)
            if status == 429:
                self.send_header("Retry-After", "30")
            self.send_header("X-Error-Message", message)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

    return Handler
