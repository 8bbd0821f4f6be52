"""`/imagebind_view` through the launched app, as gradio_client and an MCP client call it.

The figures are checked against ImageBind's vectors of the same files computed here, in this
process, from the same tiny checkpoint (tests/model/test_binding.py holds binding.py to
ImageBind's own model and example).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import torch
from gradio_client import Client, handle_file

from pandagpt_demo.config import ModelConfig
from pandagpt_demo.model import binding
from pandagpt_demo.model.modalities import Modality
from pandagpt_demo.model.pandagpt import PandaGPT
from tests.app.api.test_openai_api import metric
from tests.conftest import REPO_ROOT
from tests.launched import App

IMAGE, AUDIO, THERMAL = (REPO_ROOT / "examples" / name for name in ("sunset.jpg", "dog_bark.wav", "thermal_person.png"))


@pytest.fixture(scope="module")
def app(tiny_config: ModelConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    app = App(tiny_config, tmp_path_factory.mktemp("view"))
    yield app
    app.stop()


def view_of(app: App, **arguments: object) -> dict:
    return json.loads(Client(app.url, verbose=False).predict(**arguments, api_name="/imagebind_view"))


def test_similarity_and_labels_of_three_files(app: App, tiny_model: PandaGPT) -> None:
    counted = 'pandagpt_requests_total{endpoint="imagebind_view"}'
    before = metric(app, counted)
    view = view_of(
        app,
        image=handle_file(str(IMAGE)),
        audio=handle_file(str(AUDIO)),
        thermal=handle_file(str(THERMAL)),
        labels=" a sunset, a dog barking,, a person ",
    )
    assert view["files"] == ["sunset.jpg (image)", "dog_bark.wav (audio)", "thermal_person.png (thermal)"]
    assert view["labels"] == ["a sunset", "a dog barking", "a person"]

    files = [(Modality.IMAGE, IMAGE), (Modality.AUDIO, AUDIO), (Modality.THERMAL, THERMAL)]
    vectors = torch.stack([tiny_model.embed_file(kind, path) for kind, path in files])
    expected = torch.nn.functional.cosine_similarity(vectors[:, None], vectors[None, :], dim=-1)
    torch.testing.assert_close(torch.tensor(view["similarity"]), expected, atol=1e-5, rtol=0)
    labels = binding.label_vectors(tiny_model.encoder, view["labels"])
    probabilities = binding.label_probabilities(tiny_model.encoder, [(kind, v) for (kind, _), v in zip(files, vectors)], labels)
    torch.testing.assert_close(torch.tensor(view["probabilities"]), probabilities, atol=1e-5, rtol=0)
    assert metric(app, counted) == before + 1

    alone = view_of(app, image=handle_file(str(IMAGE)))
    assert alone["similarity"] == [[pytest.approx(1.0, abs=1e-5)]] and alone["labels"] == [] and alone["probabilities"] == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "No files are in use"),
        ({"labels": " , ,"}, "No files are in use"),
        ({"image": True, "labels": " , ,"}, "The labels are empty"),
        ({"image": True, "labels": ", ".join(f"label {i}" for i in range(500))}, "500 labels is too many"),
        ({"image": True, "labels": "a dog " * 40}, "longer than ImageBind's text tower reads"),
    ],
)
def test_bad_requests_get_a_clear_message(app: App, arguments: dict, message: str) -> None:
    if arguments.pop("image", False):
        arguments["image"] = handle_file(str(IMAGE))
    with pytest.raises(Exception, match=message):
        Client(app.url, verbose=False).predict(**arguments, api_name="/imagebind_view")
    assert httpx.get(app.url + "readyz", timeout=10).status_code == 200


def test_an_mcp_client_gets_the_same_view(app: App) -> None:
    """The endpoint is an MCP tool too (the official `mcp` client), with files as data URLs."""
    import asyncio

    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    from tests.app.api.test_mcp import data_url, text_of

    async def view() -> tuple[list, object]:
        async with streamable_http_client(app.url + "gradio_api/mcp/") as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = (await session.list_tools()).tools
                result = await session.call_tool("imagebind_view", {"image": data_url(IMAGE, "image/jpeg"), "labels": "a sunset, rain"})
                return tools, result

    tools, result = asyncio.run(view())
    tool = next(t for t in tools if t.name == "imagebind_view")
    assert "as ImageBind" in tool.description and "`gradio upload-mcp <this app's URL> <folder>`" in tool.description
    assert not result.isError
    view = json.loads(text_of(result))
    direct = view_of(app, image=handle_file(str(IMAGE)), labels="a sunset, rain")
    assert view["labels"] == direct["labels"] == ["a sunset", "rain"]
    torch.testing.assert_close(torch.tensor(view["probabilities"]), torch.tensor(direct["probabilities"]), atol=1e-6, rtol=0)
