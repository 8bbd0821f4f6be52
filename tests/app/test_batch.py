"""Offline batch runs (app/batch/): a 40-line batch of mixed kinds with 3 bad lines, stopped midway
and resumed, each answer equal to `/v1`'s greedy answer for the same body (the launched app, the
official `openai` package); `make` and `--embeddings` through the command line."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openai
import pytest

from pandagpt_demo.app.answering.settings import AnswerSettings
from pandagpt_demo.app.batch.input_lines import read_lines
from pandagpt_demo.app.batch.runner import BatchRunner, Tally, answered_ids
from pandagpt_demo.config import ModelConfig, ServingConfig
from pandagpt_demo.model.modalities import Modality
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.serving.start import start_engine
from tests.conftest import REPO_ROOT
from tests.launched import App
from tests.media import EXAMPLE_MEDIA, write_video_with_sound

MEDIA = EXAMPLE_MEDIA
QUESTIONS = ["What is this?", "Describe it in one sentence.", "What would you hear here?", "Is it day or night?"]


@pytest.fixture(scope="module")
def app(tiny_config: ModelConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    app = App(tiny_config, tmp_path_factory.mktemp("batch"))
    yield app
    app.stop()


def part(kind: Modality, where: str, **extra: object) -> dict:
    if kind is Modality.IMAGE:
        return {"type": "image_url", "image_url": {"url": where}}
    if kind is Modality.VIDEO:
        return {"type": "video_url", "video_url": {"url": where, **extra}}
    return {"type": "file", "file": {"file_data": where, "filename": Path(where).name}, "modality": kind.value}


def batch_input(folder: Path) -> tuple[Path, dict[str, dict]]:
    """40 lines: 37 requests over every kind (a local path relative to the input, one absolute, one
    file:// URL, a video heard with its sound, a history, a stop string) and 3 bad lines."""
    media = folder / "media"
    media.mkdir()
    for path in MEDIA.values():
        (media / path.name).write_bytes(path.read_bytes())
    write_video_with_sound(media / "talk.mp4", seconds=4)
    lines, bodies = [], {}
    kinds = list(MEDIA)
    for n in range(37):
        kind = kinds[n % len(kinds)]
        where = f"media/{MEDIA[kind].name}" if n != 7 else str((media / MEDIA[kind].name).resolve())
        if n == 8:
            where = (media / MEDIA[kind].name).resolve().as_uri()
        content = [{"type": "text", "text": QUESTIONS[n % len(QUESTIONS)]}, part(kind, where)]
        if n == 11:
            content.append(part(Modality.VIDEO, "media/talk.mp4", with_sound=True))
        body = {"model": "pandagpt-tiny", "messages": [{"role": "user", "content": content}], "max_tokens": 6 + n % 5, "temperature": 0}
        if n == 12:
            body["messages"] = [{"role": "user", "content": "Hello?"}, {"role": "assistant", "content": "Hi."}, *body["messages"]]
        if n == 13:
            body["stop"] = ["e"]
        lines.append({"custom_id": f"r{n}", "method": "POST", "url": "/v1/chat/completions", "body": body})
        bodies[f"r{n}"] = body
    bad = [
        "{not json",
        json.dumps(
            {
                "custom_id": "missing-file",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    **bodies["r0"],
                    "messages": [{"role": "user", "content": [{"type": "text", "text": "?"}, part(Modality.IMAGE, "media/none.png")]}],
                },
            }
        ),
        json.dumps({"custom_id": "too-hot", "method": "POST", "url": "/v1/chat/completions", "body": {**bodies["r1"], "temperature": 9}}),
    ]
    text = [json.dumps(line) for line in lines]
    for index, line in zip((5, 20, 33), bad):
        text.insert(index, line)
    path = folder / "requests.jsonl"
    path.write_text("\n".join(text) + "\n")
    return path, bodies


def inline(body: dict, folder: Path) -> dict:
    """The same body as a /v1 client sends it: every local file as a data URL (this test's own reading)."""
    body = json.loads(json.dumps(body))
    for message in body["messages"]:
        for item in message["content"] if isinstance(message["content"], list) else []:
            if item["type"] == "text":
                continue
            key = "image_url" if item["type"] == "image_url" else "video_url" if item["type"] == "video_url" else None
            where = item[key]["url"] if key else item["file"]["file_data"]
            path = Path(where.removeprefix("file://"))
            path = path if path.is_absolute() else folder / path
            data = base64.b64encode(path.read_bytes()).decode()
            if key:
                item[key]["url"] = f"data:{'image/jpeg' if key == 'image_url' else 'video/mp4'};base64,{data}"
            else:
                item["file"]["file_data"] = data
    return body


def results(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_40_line_batch_stopped_and_resumed_answers_as_v1_does(app: App, tiny_model: PandaGPT, tmp_path: Path) -> None:
    requests, bodies = batch_input(tmp_path)
    output = tmp_path / "results.jsonl"
    engine = start_engine(tiny_model, ServingConfig(max_batch=8, max_waiting=8))
    try:
        first = BatchRunner(tiny_model, engine, "pandagpt-tiny", AnswerSettings(), workers=8)
        tally = Tally()
        first.run(read_lines(requests), tmp_path, output, tally, lambda answer: first.stop() if tally.done + tally.failed >= 15 else None)
        before = results(output)
        assert 15 <= len(before) < 40, "stopped midway: what was finished is kept, what was in flight is not written"
        second = BatchRunner(tiny_model, engine, "pandagpt-tiny", AnswerSettings(), workers=8)
        again = Tally()
        second.run(read_lines(requests), tmp_path, output, again)
    finally:
        engine.close()
    after = results(output)
    assert after[: len(before)] == before and again.skipped == len([r for r in before if r["custom_id"]])
    assert again.done + again.failed == 40 - again.skipped, "the rerun answered only what was missing"
    by_id = {r["custom_id"]: r for r in after}
    assert len(by_id) == 40 and sorted(k for k in by_id if k) == sorted([*bodies, "missing-file", "too-hot"]) and None in by_id

    assert by_id[None]["response"] is None and "line 6 is not JSON" in by_id[None]["error"]["message"]
    missing = by_id["missing-file"]["response"]
    assert missing["status_code"] == 400 and "media/none.png" in missing["body"]["error"]["message"]
    hot = by_id["too-hot"]["response"]
    assert hot["status_code"] == 400 and "temperature" in hot["body"]["error"]["message"]

    client = openai.OpenAI(base_url=app.url + "v1", api_key="none", max_retries=0)
    for custom_id, body in bodies.items():
        got = by_id[custom_id]["response"]
        assert got["status_code"] == 200, got
        expected = client.chat.completions.create(**inline(body, tmp_path))
        answer = got["body"]
        assert answer["choices"][0]["message"]["content"] == expected.choices[0].message.content, custom_id
        assert answer["choices"][0]["finish_reason"] == expected.choices[0].finish_reason
        assert answer["usage"] == expected.usage.model_dump(exclude_none=True, include={"prompt_tokens", "completion_tokens", "total_tokens"})
        assert answer["object"] == "chat.completion" and answer["model"] == "pandagpt-tiny"


def run_cli(*args: str, checkpoints: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "pandagpt_demo.batch", "--model", "tiny", "--checkpoints", str(checkpoints), *args]
    return subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_make_then_run_with_ctrl_c_a_resume_and_vectors(tiny_config: ModelConfig, tiny_model: PandaGPT, tmp_path: Path) -> None:
    checkpoints = tiny_config.files.imagebind_path.parent.parent
    folder = tmp_path / "clips"
    folder.mkdir()
    for kind in (Modality.IMAGE, Modality.AUDIO, Modality.IMU):
        (folder / MEDIA[kind].name).write_bytes(MEDIA[kind].read_bytes())
    requests = tmp_path / "in" / "requests.jsonl"
    made = subprocess.run(
        [sys.executable, "-m", "pandagpt_demo.batch", "make", "--model", "tiny", "--question", "What is it?", "--max-tokens", "200", str(folder), "-o", str(requests)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    lines = [json.loads(line) for line in requests.read_text().splitlines()]
    assert [line["custom_id"] for line in lines] == ["request-1", "request-2", "request-3"]
    assert [line["body"]["temperature"] for line in lines] == [0.0] * 3, "greedy by default"
    assert lines[2]["body"]["messages"][0]["content"][1] == {"type": "image_url", "image_url": {"url": "../clips/sunset.jpg"}}

    output, vectors = tmp_path / "out" / "results.jsonl", tmp_path / "out" / "vectors.npy"
    output.parent.mkdir()
    stopped = run_cli("-i", str(requests), "-o", str(output), "--concurrency", "1", checkpoints=checkpoints)
    deadline = time.monotonic() + 120
    while not (output.exists() and output.read_text().count("\n") >= 1) and time.monotonic() < deadline and stopped.poll() is None:
        time.sleep(0.05)
    stopped.send_signal(signal.SIGINT)
    _, err = stopped.communicate(timeout=120)
    assert stopped.returncode == 0, err
    kept = [line for line in results(output) if line["response"]["status_code"] == 200]
    finished = run_cli("-i", str(requests), "-o", str(output), "--embeddings", str(vectors), "--labels", "a sunset, a dog", checkpoints=checkpoints)
    _, err = finished.communicate(timeout=300)
    assert finished.returncode == 0, err
    answered = sorted(r["custom_id"] for r in results(output) if r["response"]["status_code"] == 200)
    assert answered == ["request-1", "request-2", "request-3"], "each answered once"
    index = [json.loads(line) for line in vectors.with_suffix(".jsonl").read_text().splitlines()]
    array = np.load(vectors)
    assert array.dtype == np.float32 and array.shape[0] == len(index) == 3 - len(kept), "the vectors of this run's answers"
    for row in index:
        expected = tiny_model.embed_file(Modality(row["kind"]), folder / row["name"]).float().numpy()
        np.testing.assert_allclose(array[row["row"]], expected, atol=1e-5)
        assert set(row["probabilities"]) == {"a sunset", "a dog"} and abs(sum(row["probabilities"].values()) - 1) < 1e-5


def test_a_rerun_asks_again_what_was_refused_only_for_the_moment(tmp_path: Path) -> None:
    output = tmp_path / "results.jsonl"
    lines = [("a", 200), ("b", 400), ("c", 503), ("d", 429), ("e", 500)]
    output.write_text("".join(json.dumps({"custom_id": c, "response": {"status_code": s}}) + "\n" for c, s in lines) + '{"custom_id": "torn')
    assert answered_ids(output) == {"a", "b"}, "a busy, closing or failing server is no answer; a torn last line neither"
