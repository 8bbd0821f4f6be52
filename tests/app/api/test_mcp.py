"""The MCP tool as MCP clients use it: the official `mcp` client with a file sent three ways (a
data URL; a local file through the upload route Gradio offers MCP clients, `gradio upload-mcp`;
an http URL), and the MCP Inspector's own CLI."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from pandagpt_demo.config import ModelConfig
from tests.conftest import REPO_ROOT
from tests.launched import App

IMAGE, THERMAL = REPO_ROOT / "examples" / "sunset.jpg", REPO_ROOT / "examples" / "thermal_person.png"
GREEDY = dict(temperature=0.0, top_p=0.01)
INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"  # the MCP project's reference client; `--cli` is its command-line mode
NODE = "node@22"  # the Node.js it requires (>= 22.19), from npm, whatever Node.js runs npx (Debian's is 18)


@pytest.fixture(scope="module")
def app(tiny_config: ModelConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    app = App(tiny_config, tmp_path_factory.mktemp("mcp"))
    yield app
    app.stop()


def data_url(path: Path, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def chat(app: App, question: str, **inputs: object) -> str:
    """The same question through /chat (gradio_client), greedy."""
    return Client(app.url, verbose=False).predict(question, api_name="/chat", **GREEDY, **inputs).strip()


def text_of(result: object) -> str:
    text = result.content[0].text
    return (json.loads(text) if text.startswith('"') else text).strip()


async def call(app: App, arguments: dict, progress: list | None = None) -> object:
    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message)

    async with streamable_http_client(app.url + "gradio_api/mcp/") as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            return await session.call_tool("ask_pandagpt", arguments, progress_callback=on_progress if progress is not None else None)


def test_the_tool_answers_about_a_data_url_and_the_page_actions_are_not_tools(app: App) -> None:
    async def tools() -> list:
        async with streamable_http_client(app.url + "gradio_api/mcp/") as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return (await session.list_tools()).tools

    names = [tool.name for tool in asyncio.run(tools())]
    assert sorted(names) == ["answer_blend", "answer_each", "ask_pandagpt", "imagebind_intake", "imagebind_view"], (
        "the page's own actions are not tools"
    )
    tool = next(t for t in asyncio.run(tools()) if t.name == "ask_pandagpt")
    assert "sees and hears" in tool.description and tool.inputSchema["properties"]["question"]["description"]
    # Gradio ends every tool with files by naming an `upload_file_to_gradio` tool "if present"; the
    # description says where that tool comes from, so it names only what a client can have.
    assert "`gradio upload-mcp <this app's URL> <folder>`" in tool.description
    progress: list = []
    result = asyncio.run(
        call(app, {"question": "Describe this image.", "image": data_url(IMAGE, "image/jpeg"), "max_new_tokens": 8, **GREEDY}, progress)
    )
    assert not result.isError
    assert text_of(result) == chat(app, "Describe this image.", image=handle_file(str(IMAGE)), max_new_tokens=8)
    assert progress, "a client that asks for progress gets notifications"


def test_a_local_file_goes_through_gradios_upload_route_for_mcp_clients(app: App, tmp_path: Path) -> None:
    """`gradio upload-mcp <app> <folder>`: the stdio server an MCP client runs beside this one; its
    `upload_file_to_gradio` uploads a file from the folder and returns the URL the tool takes."""
    shutil.copy(THERMAL, tmp_path / "person.png")
    gradio = Path(sys.executable).with_name("gradio")
    upload = StdioServerParameters(command=str(gradio), args=["upload-mcp", app.url, str(tmp_path)], env=dict(os.environ))

    async def round_trip() -> tuple[str, object]:
        async with stdio_client(upload) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                uploaded = await session.call_tool("upload_file_to_gradio", {"file": str(tmp_path / "person.png")})
        url = text_of(uploaded)
        return url, await call(app, {"question": "Who is there?", "thermal": url, "max_new_tokens": 8, **GREEDY})

    url, result = asyncio.run(round_trip())
    assert url.startswith(app.url.rstrip("/") + "/gradio_api/file="), url
    assert not result.isError, result
    assert text_of(result) == chat(app, "Who is there?", thermal=handle_file(str(THERMAL)), max_new_tokens=8)


def test_the_mcp_inspector_cli_lists_and_calls_the_tool(app: App) -> None:
    """The MCP Inspector's CLI as `npx` runs it (it and its Node.js fetched from npm on first use;
    tests/run.py installs npm where `npx` is missing), the file sent as a data URL on its command line."""

    def inspector(*arguments: str) -> dict:
        command = ["npx", "-y", "-p", NODE, "-p", INSPECTOR, "mcp-inspector", "--cli", app.url + "gradio_api/mcp/", "--transport", "http", *arguments]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout)

    assert "ask_pandagpt" in [tool["name"] for tool in inspector("--method", "tools/list")["tools"]]
    arguments = {
        "question": "What is warm here?",
        "thermal": data_url(THERMAL, "image/png"),
        "max_new_tokens": "8",
        "temperature": "0",
        "top_p": "0.01",
    }
    flags = [flag for key, value in arguments.items() for flag in ("--tool-arg", f"{key}={value}")]
    result = inspector("--method", "tools/call", "--tool-name", "ask_pandagpt", *flags)
    assert not result.get("isError"), result
    assert text_of_json(result) == chat(app, "What is warm here?", thermal=handle_file(str(THERMAL)), max_new_tokens=8)


def text_of_json(result: dict) -> str:
    text = result["content"][0]["text"]
    return (json.loads(text) if text.startswith('"') else text).strip()
