"""What no /v1 request may do, through the launched app: send more than the server takes (413,
whether its length is declared or not), or have the server fetch from inside its network. And what
a large request still gets: the answer its files give, read from the spooled body byte for byte."""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file

from pandagpt_demo.config import ModelConfig
from tests.conftest import REPO_ROOT
from tests.launched import App
from tests.waiting import wait_until

MODEL = "pandagpt-tiny"
EXAMPLES = REPO_ROOT / "examples"
APPLE, BARK, IMU = EXAMPLES / "red_apple.png", EXAMPLES / "dog_bark.wav", EXAMPLES / "imu_walking.csv"  # each spooled: over 64 KB as base64
GREEDY = {"temperature": 0.0, "top_p": 0.01, "max_tokens": 8}
ALLOWED = "127.0.0.2"  # the operator's allow-list; 127.0.0.1 stays refused


@pytest.fixture(scope="module")
def app(tiny_config: ModelConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    flags = ["--max-file-mb", "1", "--max-request-mb", "2", "--allow-remote-media", "--remote-media-allow", ALLOWED]
    app = App(tiny_config, tmp_path_factory.mktemp("limits"), *flags)
    yield app
    app.stop()


class Site(ThreadingHTTPServer):
    """A local web server that counts the requests it gets: `/apple.png`, and `/to?url` redirecting."""

    def __init__(self, host: str) -> None:
        self.hits: list[str] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                site.hits.append(self.path)
                if self.path.startswith("/to?"):
                    self.send_response(302)
                    self.send_header("Location", self.path.removeprefix("/to?"))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = APPLE.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__((host, 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://{self.server_address[0]}:{self.server_address[1]}{path}"


@pytest.fixture
def sites() -> Iterator[tuple[Site, Site]]:
    """One server the operator allows and one on loopback it does not."""
    allowed, inside = Site(ALLOWED), Site("127.0.0.1")
    yield allowed, inside
    for site in (allowed, inside):
        site.shutdown()
        site.server_close()


def post(app: App, content: bytes | Iterator[bytes], headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(app.url + "v1/chat/completions", content=content, headers={"content-type": "application/json", **(headers or {})}, timeout=120)


def completion(*parts: dict, question: str = "What is in these?") -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": [{"type": "text", "text": question}, *parts]}], **GREEDY}


def file_part(path: Path, mime: str, modality: str | None = None) -> dict:
    part = {"type": "file", "file": {"file_data": f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}", "filename": path.name}}
    return {**part, "modality": modality} if modality else part


def refusal(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_a_body_over_the_limit_is_a_413_whether_its_length_is_declared_or_not(app: App) -> None:
    declared = refusal(post(app, b" " * (3 * 2**20)), 413)
    assert declared["message"] == "The request is larger than the 2 MB this server accepts." and declared["type"] == "invalid_request_error"
    sent: list[int] = []

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked, refused when 2 MB have arrived
        for _ in range(48):
            sent.append(1)
            yield b'{"model": "' + b"m" * 2**16 + b'"}'

    undeclared = refusal(post(app, chunks()), 413)
    assert undeclared["message"] == declared["message"]
    media = json.dumps(completion(*[file_part(EXAMPLES / "rain.wav", "audio/wav")] * 16)).encode()  # 2.7 MB, nearly all of it media
    assert len(media) > 2 * 2**20
    assert refusal(post(app, media), 413)["message"] == declared["message"], "media count against the limit too"


def test_files_spooled_from_the_body_are_answered_as_the_same_files_through_chat(app: App) -> None:
    """Three files over the spooling size, one with JSON's `\\/` escapes (as PHP writes them): the
    answer equals /chat's with the same files, so each was decoded exactly."""
    parts = (file_part(APPLE, "image/png"), file_part(BARK, "audio/wav"), file_part(IMU, "text/csv", "imu"))
    body = json.dumps(completion(*parts))
    escaped = body.replace("/", "\\/")
    assert escaped != body
    answers = []
    for text in (body, escaped):
        response = post(app, text.encode())
        assert response.status_code == 200, response.text
        answers.append(response.json()["choices"][0]["message"]["content"])
    files = {"image": [handle_file(str(APPLE))], "audio": [handle_file(str(BARK))], "imu": [handle_file(str(IMU))]}
    greedy = {"temperature": 0.0, "top_p": 0.01, "max_new_tokens": 8}
    expected = Client(app.url, verbose=False).predict("What is in these?", api_name="/chat", **greedy, **files).strip()
    assert answers == [expected, expected]
    assert not list((app.uploads / "api").glob("*/*")), "a request's files are gone once it is answered"


def test_a_url_or_a_redirect_inside_the_network_is_refused_unfetched_and_an_allowed_server_is_fetched(app: App, sites: tuple[Site, Site]) -> None:
    allowed, inside = sites

    def ask(url: str) -> httpx.Response:
        return post(app, json.dumps(completion({"type": "image_url", "image_url": {"url": url}})).encode())

    direct = refusal(ask(inside.url("/apple.png")), 400)
    assert "127.0.0.1 is a loopback address" in direct["message"] and "--remote-media-allow" in direct["message"]
    assert direct["param"] == "messages[0].content[1].image_url.url"
    redirected = refusal(ask(allowed.url("/to?" + inside.url("/apple.png"))), 400)
    assert "127.0.0.1 is a loopback address" in redirected["message"]
    assert inside.hits == [], "nothing was asked of the server inside"
    fetched = ask(allowed.url("/apple.png"))
    assert fetched.status_code == 200, fetched.text
    same = post(app, json.dumps(completion(file_part(APPLE, "image/png"))).encode())
    assert fetched.json()["choices"][0]["message"]["content"] == same.json()["choices"][0]["message"]["content"]
    assert allowed.hits == ["/to?" + inside.url("/apple.png"), "/apple.png"]


@pytest.mark.parametrize("route", ["gradio_api/queue/join", "gradio_api/mcp/", "gradio_api/call/chat"])
def test_gradios_routes_refuse_a_body_past_one_file_as_a_data_url(app: App, route: str) -> None:
    """Their bodies are read whole: past 1 MB (--max-file-mb) as base64 plus 1 MB, a 413 whether the
    length is declared or not; a body within it reaches the route (which answers for itself)."""
    url, headers = app.url + route, {"content-type": "application/json"}
    assert httpx.post(url, content=b" " * (3 * 2**20), headers=headers, timeout=60).status_code == 413
    assert httpx.post(url, content=iter([b" " * 2**18] * 12), headers=headers, timeout=60).status_code == 413
    assert httpx.post(url, content=b"{}" + b" " * (2 * 2**20), headers=headers, timeout=60).status_code != 413


def test_a_client_gone_midway_through_its_body_leaves_nothing_behind_and_is_no_fault_of_ours(app: App) -> None:
    body = json.dumps(completion(file_part(BARK, "audio/wav"))).encode()
    with socket.create_connection(("127.0.0.1", app.port)) as raw:
        head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        raw.sendall(head.encode() + body[: len(body) // 2])
    line = 'pandagpt_errors_total{endpoint="openai",kind="disconnected"} 1.0'
    wait_until(lambda: line in httpx.get(app.url + "metrics").text, what="the disconnect counted")
    assert not any((app.uploads / "api").glob("*/*")), "its spooled half is gone"
    assert "Internal error" not in app.log.read_text()
