"""`/answer_each` through the launched app: each row is /chat's greedy answer with that file alone,
the last /chat's answer with all of them, streamed as rows so far."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from gradio_client import Client, handle_file

from pandagpt_demo.config import ModelConfig
from tests.app.api.test_openai_api import metric
from tests.conftest import REPO_ROOT
from tests.launched import App

IMAGE, AUDIO = REPO_ROOT / "examples" / "sunset.jpg", REPO_ROOT / "examples" / "dog_bark.wav"
TOKENS = 12  # at 10, the tiny model answers sunset.jpg + dog_bark.wav as dog_bark.wav alone: rows that must differ would not


@pytest.fixture(scope="module")
def app(tiny_config: ModelConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    app = App(tiny_config, tmp_path_factory.mktemp("each"))
    yield app
    app.stop()


def chat(app: App, **files: object) -> str:
    return Client(app.url, verbose=False).predict("What is this?", **files, max_new_tokens=TOKENS, temperature=0.0, api_name="/chat")


def test_rows_are_the_answers_with_each_file_alone_and_with_all(app: App) -> None:
    counted = 'pandagpt_requests_total{endpoint="answer_each"}'
    before = metric(app, counted)
    job = Client(app.url, verbose=False).submit(
        "What is this?",
        image=handle_file(str(IMAGE)),
        audio=handle_file(str(AUDIO)),
        weights={"audio": 0.5},
        max_new_tokens=TOKENS,
        api_name="/answer_each",
    )
    rows = json.loads(job.result())
    assert [row["label"] for row in rows] == ["sunset.jpg (image)", "dog_bark.wav (audio)", "all, weighted"]
    assert all(row["done"] and row["error"] is None for row in rows)
    assert len(job.outputs()) > 1, "the rows stream as they are decoded"
    assert rows[0]["text"].strip() == chat(app, image=handle_file(str(IMAGE))).strip()
    assert rows[1]["text"].strip() == chat(app, audio=handle_file(str(AUDIO))).strip()
    assert rows[2]["text"].strip() == chat(app, image=handle_file(str(IMAGE)), audio=handle_file(str(AUDIO)), weights={"audio": 0.5}).strip()
    texts = [row["text"] for row in rows]
    assert len(set(texts)) == 3, f"every row is an answer of its own, so swapped rows or an ignored vector would show: {texts}"
    assert metric(app, counted) == before + 1


@pytest.mark.parametrize(
    ("arguments", "message"),
    [({"question": "Hm?"}, "No files are in use"), ({"question": " ", "image": True}, "question must be a non-empty string")],
)
def test_bad_requests_get_a_clear_message(app: App, arguments: dict, message: str) -> None:
    if arguments.pop("image", False):
        arguments["image"] = handle_file(str(IMAGE))
    with pytest.raises(Exception, match=message):
        Client(app.url, verbose=False).predict(**arguments, api_name="/answer_each")


def test_a_blend_streams_a_row_per_step_whose_ends_are_each_files_answer(app: App) -> None:
    counted = 'pandagpt_requests_total{endpoint="answer_blend"}'
    before = metric(app, counted)
    job = Client(app.url, verbose=False).submit(
        "What is this?", image=handle_file(str(IMAGE)), audio=handle_file(str(AUDIO)), steps=3, max_new_tokens=TOKENS, api_name="/answer_blend"
    )
    rows = json.loads(job.result())
    assert [row["label"] for row in rows] == [
        "0·sunset.jpg + 1·dog_bark.wav",
        "0.5·sunset.jpg + 0.5·dog_bark.wav",
        "1·sunset.jpg + 0·dog_bark.wav",
    ]
    assert all(row["done"] and row["error"] is None for row in rows)
    assert len(job.outputs()) > 1, "the rows stream as they are decoded"
    assert rows[0]["text"].strip() == chat(app, audio=handle_file(str(AUDIO))).strip()
    assert rows[-1]["text"].strip() == chat(app, image=handle_file(str(IMAGE))).strip()
    assert (
        rows[1]["text"].strip()
        == chat(app, image=handle_file(str(IMAGE)), audio=handle_file(str(AUDIO)), weights={"image": 0.5, "audio": 0.5}).strip()
    )
    texts = [row["text"] for row in rows]
    assert len(set(texts)) == 3, f"B alone, the half mix and A alone differ, so swapped ends would show: {texts}"
    assert metric(app, counted) == before + 1


@pytest.mark.parametrize(
    ("files", "steps", "message"),
    [
        ({"image": IMAGE}, 5, "exactly two files, A and B, not 1"),
        ({"image": [IMAGE, IMAGE], "audio": AUDIO}, 5, "exactly two files, A and B, not 3"),
        ({"image": IMAGE, "audio": AUDIO}, 1, "2 to 9 steps, not 1"),
        ({"image": IMAGE, "audio": AUDIO}, 10, "2 to 9 steps, not 10"),
    ],
)
def test_a_blend_is_refused_with_a_clear_message(app: App, files: dict, steps: int, message: str) -> None:
    given = {kind: [handle_file(str(p)) for p in path] if isinstance(path, list) else handle_file(str(path)) for kind, path in files.items()}
    with pytest.raises(Exception, match=message):
        Client(app.url, verbose=False).predict("Hm?", **given, steps=steps, api_name="/answer_blend")
