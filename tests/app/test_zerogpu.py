"""ZeroGPU: each answer is a `spaces.GPU` call asking for the seconds its request needs, on arguments
that survive pickling, and stopping before its time is up with the text so far kept.

The launched tests run the real app with SPACES_ZERO_GPU set and `tests/zerogpu_stand_in/spaces.py`
in place of Hugging Face's package (which needs their ZeroGPU service): it asks the duration
function, pickles arguments and results, and aborts a call that outlives its seconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from pandagpt_demo.app.zerogpu import estimate_seconds
from pandagpt_demo.config import ZeroGpuConfig
from pandagpt_demo.model.modalities import Modality
from tests.app.test_app import AUDIO, IMAGE, send_args, texts
from tests.conftest import REPO_ROOT
from tests.launched import App

STAND_IN = REPO_ROOT / "tests" / "zerogpu_stand_in"


def test_the_duration_grows_with_the_answer_and_the_files_to_encode_within_the_limits() -> None:
    config = ZeroGpuConfig()
    tokens_only = estimate_seconds(config, 1000, [])
    assert tokens_only == round(config.margin_s + 1000 * config.token_s)
    with_files = estimate_seconds(config, 1000, [Modality.IMAGE, Modality.VIDEO])
    encode = dict(config.encode_s)
    assert with_files - tokens_only == pytest.approx(encode["image"] + encode["video"], abs=1)
    assert estimate_seconds(config, 1, []) == config.min_s  # a short answer still pays for the call's start
    assert estimate_seconds(config, 100_000, [Modality.VIDEO] * 20) == config.max_s  # never past the cap
    assert estimate_seconds(ZeroGpuConfig(max_s=300), 100_000, []) == 300
    assert estimate_seconds(config, "not a number", []) == config.min_s  # the handler refuses the setting itself


def calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def zero_gpu_app(start: Callable[..., App], tmp_path: Path, *flags: str, slow_step: float | None = None) -> tuple[App, Path]:
    log = tmp_path / f"gpu-calls-{len(list(tmp_path.glob('gpu-calls-*')))}.jsonl"
    env = {"SPACES_ZERO_GPU": "true", "SPACES_STAND_IN_LOG": str(log)}
    return start(*flags, slow_step=slow_step, env=env, python_path=(STAND_IN,)), log


def test_each_answer_asks_for_the_seconds_its_request_needs_and_decodes_inside_the_call(start: Callable[..., App], tmp_path: Path) -> None:
    app, log = zero_gpu_app(start, tmp_path)
    config = ZeroGpuConfig()
    log.write_text("")  # the readiness probe's call is not this test's
    client = Client(app.url, verbose=False)
    answer = client.predict("What is this?", image=handle_file(IMAGE), audio=handle_file(AUDIO), max_new_tokens=900, api_name="/chat")
    chat, _, _ = client.predict(*send_args("And this?", IMAGE, max_new_tokens=300), api_name="/send")
    client.predict(*send_args("Again?", max_new_tokens=300), api_name="/send")  # the image is encoded already: not paid for again
    assert answer.strip() and texts(chat)[-1][0] == "assistant" and texts(chat)[-1][1].strip()
    chat_call, send_call, again_call = calls(log)
    assert chat_call["task"] == "ask_pandagpt_model1" and chat_call["ended"] == "completed"
    assert chat_call["duration"] == estimate_seconds(config, 900, [Modality.IMAGE, Modality.AUDIO])
    assert send_call["duration"] == estimate_seconds(config, 300, [Modality.IMAGE]) > again_call["duration"] == estimate_seconds(config, 300, [])
    assert "batched-decoder" not in chat_call["threads"], "a decoding thread runs outside spaces.GPU"


def test_an_answer_stops_before_its_gpu_time_is_up_and_keeps_its_text(start: Callable[..., App], tmp_path: Path) -> None:
    app, log = zero_gpu_app(start, tmp_path, "--zerogpu-max-s", "4", "--zerogpu-margin-s", "2", slow_step=0.05)
    log.write_text("")
    client = Client(app.url, verbose=False)
    chat, _, _ = client.predict(*send_args("Tell me a long story.", IMAGE, max_new_tokens=1000), api_name="/send")
    [call] = calls(log)
    assert call["duration"] == 4 and call["ended"] == "completed"  # not aborted by ZeroGPU: it stopped itself
    assert 4 - 2 - 0.5 < call["elapsed"] < 4, "it stopped at its deadline, not by reaching its end"
    (_, question), (role, answer) = texts(chat)[-2:]
    assert question == "Tell me a long story." and role == "assistant" and answer.strip()  # the text so far is kept as the answer
