"""What ImageBind took in, and a video's own sound, through the launched app as programs use it:
`/imagebind_intake` (gradio_client and the official `mcp` client), `/chat`'s `video_sound`, and
`/v1`'s `with_sound` (the official `openai` package)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf
from gradio_client import Client, handle_file
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from pandagpt_demo.config import ModelConfig
from pandagpt_demo.model.intake import took_in
from pandagpt_demo.model.modalities import Modality
from tests.app.api.test_openai_api import metric
from tests.launched import App
from tests.media import EXAMPLE_MEDIA, write_video_with_sound

FILES = EXAMPLE_MEDIA
GREEDY = dict(temperature=0.0, top_p=0.01, max_new_tokens=12)


@pytest.fixture(scope="module")
def app(tiny_config: ModelConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    app = App(tiny_config, tmp_path_factory.mktemp("intake"))
    yield app
    app.stop()


@pytest.fixture(scope="module")
def talk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("talk") / "talk.mp4"
    write_video_with_sound(path, seconds=6)
    return path


def intake_of(app: App, **files: object) -> list[dict]:
    return json.loads(Client(app.url, verbose=False).predict(**files, api_name="/imagebind_intake"))["files"]


def expected(kind: Modality, path: Path, name: str | None = None) -> dict:
    """What model/intake.py says of the file, in this process, as JSON reads it back."""
    return {"name": name or path.name, **json.loads(json.dumps(took_in(kind, path).as_data()))}


def test_every_kind_is_told_as_data_equal_to_the_loaders_figures(app: App, tmp_path: Path) -> None:
    long = tmp_path / "four-minutes.flac"
    t = np.arange(240 * 16_000) / 16_000
    sf.write(long, (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16_000)
    before = metric(app, 'pandagpt_requests_total{endpoint="imagebind_intake"}')
    entries = intake_of(app, **{kind.value: handle_file(str(path)) for kind, path in FILES.items()})
    assert entries == [expected(kind, path) for kind, path in FILES.items()]
    (heard,) = intake_of(app, audio=handle_file(str(long)))
    assert heard["summary"] == "6 s of this 4 min recording were heard, from 0:00, 1:19 and 2:39; nothing after 2:41."
    assert [round(span["start"], 2) for span in heard["spans"]] == [0.0, 79.33, 158.67] and heard["large_loss"] is True
    assert metric(app, 'pandagpt_requests_total{endpoint="imagebind_intake"}') == before + 2


def test_a_videos_sound_is_its_own_entry_when_asked_and_a_silent_video_has_none(app: App, talk: Path) -> None:
    assert [e["name"] for e in intake_of(app, video=handle_file(str(talk)))] == ["talk.mp4"]
    both = intake_of(app, video=[handle_file(str(talk)), handle_file(str(FILES[Modality.VIDEO]))], video_sound=True)
    assert both == [
        expected(Modality.VIDEO, talk),
        expected(Modality.AUDIO, talk, "talk.mp4 (its sound)"),
        expected(Modality.VIDEO, FILES[Modality.VIDEO]),
    ]
    assert "sound is not part of this input" in both[0]["note"]


def test_the_mcp_tool_gives_the_same_data(app: App) -> None:
    async def call() -> tuple[list[str], str]:
        async with streamable_http_client(app.url + "gradio_api/mcp/") as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                names = [tool.name for tool in (await session.list_tools()).tools]
                image = f"data:image/jpeg;base64,{base64.b64encode(FILES[Modality.IMAGE].read_bytes()).decode()}"
                result = await session.call_tool("imagebind_intake", {"image": image})
                return names, result.content[0].text

    names, text = asyncio.run(call())
    assert "imagebind_intake" in names
    (entry,) = json.loads(json.loads(text) if text.startswith('"') else text)["files"]
    assert {k: v for k, v in entry.items() if k != "name"} == {
        k: v for k, v in expected(Modality.IMAGE, FILES[Modality.IMAGE]).items() if k != "name"
    }


def chat(app: App, **inputs: object) -> str:
    return Client(app.url, verbose=False).predict("What do you see and hear?", api_name="/chat", **GREEDY, **inputs).strip()


def test_chat_hears_a_video_only_when_asked(app: App, talk: Path) -> None:
    frames = chat(app, video=handle_file(str(talk)))
    assert chat(app, video=handle_file(str(talk)), video_sound=False) == frames, "off by default"
    heard = chat(app, video=handle_file(str(talk)), video_sound=True)
    assert heard == chat(app, video=handle_file(str(talk)), audio=handle_file(str(talk))), "frames + the same file read as a sound"
    assert heard != frames
    with pytest.raises(Exception, match="video_sound must be true or false"):
        chat(app, video=handle_file(str(talk)), video_sound="yes")


def v1(app: App, content: list[dict]) -> str:
    client = openai.OpenAI(base_url=app.url + "v1", api_key="none", max_retries=0)
    messages = [{"role": "user", "content": [{"type": "text", "text": "What do you see and hear?"}, *content]}]
    answer = client.chat.completions.create(model="pandagpt-tiny", messages=messages, temperature=0.0, top_p=0.01, max_tokens=12)
    return answer.choices[0].message.content.strip()


def video_part(path: Path, **extra: object) -> dict:
    return {"type": "video_url", "video_url": {"url": f"data:video/mp4;base64,{base64.b64encode(path.read_bytes()).decode()}", **extra}}


def test_v1_hears_a_video_part_with_sound_and_refuses_it_where_there_is_none(app: App, talk: Path) -> None:
    assert v1(app, [video_part(talk)]) == chat(app, video=handle_file(str(talk)))
    assert v1(app, [video_part(talk, with_sound=True)]) == chat(app, video=handle_file(str(talk)), video_sound=True)
    file_part = {"type": "file", "file": {"file_data": video_part(talk)["video_url"]["url"], "filename": "talk.mp4"}, "with_sound": True}
    assert v1(app, [file_part]) == chat(app, video=handle_file(str(talk)), video_sound=True)
    with pytest.raises(openai.BadRequestError, match="no sound track"):
        v1(app, [video_part(FILES[Modality.VIDEO], with_sound=True)])
    image = {
        "type": "file",
        "file": {"file_data": base64.b64encode(FILES[Modality.IMAGE].read_bytes()).decode(), "filename": "a.jpg"},
        "with_sound": True,
    }
    with pytest.raises(openai.BadRequestError, match="with_sound is for videos"):
        v1(app, [image])
    schemas = httpx.get(app.url + "v1/openapi.json").json()["components"]["schemas"]
    assert "sound track" in schemas["VideoUrl"]["properties"]["with_sound"]["description"]
    assert "sound track" in schemas["FilePart"]["properties"]["with_sound"]["description"]


def test_answer_each_gives_a_heard_videos_sound_a_row_of_its_own(app: App, talk: Path) -> None:
    rows = json.loads(
        Client(app.url, verbose=False).predict(
            "What is this?", video=handle_file(str(talk)), video_sound=True, max_new_tokens=6, api_name="/answer_each"
        )
    )
    assert [row["label"] for row in rows][:2] == ["talk.mp4 (video)", "talk.mp4 (its sound) (audio)"] and len(rows) == 3
