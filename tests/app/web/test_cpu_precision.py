"""The app started as a user starts it on a CPU machine picks its precision from the memory there is,
and the int4 model it picked answers through the page, `/chat` and `/v1`.

The launched app is `tests/tiny7b_app.py` (the real app, its 7b size at the tiny shapes) given the
memory of a machine where 8 bits would not leave room for its concurrent answers and 4 bits does
(`--memory-gb`, as on a machine that has only that much). At real size the same choice is made from
the machine's own memory: see README, "On a CPU".
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch
from gradio_client import Client, handle_file
from openai import OpenAI

from pandagpt_demo.app.precision import needs_of
from pandagpt_demo.config import LLAMA_SHAPES, ImageBindArch, ModelConfig, ServingConfig
from pandagpt_demo.weights.synthetic import write_model_set
from tests.app.web.browser import MEDIA, Page, ask, open_app, wait_for_answer
from tests.launched import App
from tests.tiny7b_app import patch_7b

GREEDY = {"temperature": 0.0, "max_new_tokens": 12}


@pytest.fixture(scope="module")
def seven_b_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 7b-layout set at the tiny shapes, float16 as the released Vicuna."""
    checkpoints = tmp_path_factory.mktemp("cpu-precision")
    with pytest.MonkeyPatch.context() as patch:
        patch_7b(patch.setitem, patch.setattr)
        write_model_set(ModelConfig.preset("7b", checkpoints), LLAMA_SHAPES["tiny"], torch.float16)
    return checkpoints


@pytest.fixture(scope="module")
def memory_gb() -> float:
    """Between what 8 bits and 4 bits need to serve the default concurrency at these shapes."""
    needs = {need.precision.label: need.serve for need in needs_of(LLAMA_SHAPES["tiny"], ImageBindArch.tiny(), ServingConfig.max_batch)}
    assert needs["4bit"] < needs["8bit"]
    return (needs["4bit"] + needs["8bit"]) / 2 / 1e9


@pytest.fixture(scope="module")
def app(seven_b_set: Path, memory_gb: float, tiny_config: ModelConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    launched = App(
        tiny_config,
        tmp_path_factory.mktemp("cpu-precision-app"),
        "--model",
        "7b",
        "--memory-gb",
        f"{memory_gb:.6f}",
        script="tests/tiny7b_app.py",
        checkpoints=seven_b_set,
    )
    yield launched
    launched.stop()


@pytest.fixture(scope="module")
def app_url(app: App) -> str:
    """The page fixture's app (tests/app/web/conftest.py): this module's."""
    return app.url


def test_the_precision_is_chosen_from_memory_and_said(app: App, seven_b_set: Path) -> None:
    logged = app.log.read_text()
    assert "quantize 4bit (precision from memory: 4bit: the largest that fits" in logged
    assert "ready: Model 7b on cpu (bfloat16, LLM in 4bit, chosen from this machine's memory)" in logged
    assert httpx.get(app.url + "readyz", timeout=10).json()["model"] == "7b"
    assert (seven_b_set / "quantized" / "vicuna_7b_v0-4bit").is_dir(), "quantized once, kept for the next start"


def test_the_int4_model_answers_through_v1_and_chat(app: App) -> None:
    client = OpenAI(base_url=app.url + "v1", api_key="unused")
    image = "data:image/jpeg;base64," + base64.b64encode(MEDIA["image"].read_bytes()).decode()
    content = [{"type": "text", "text": "What is in this picture?"}, {"type": "image_url", "image_url": {"url": image}}]
    completion = client.chat.completions.create(model="pandagpt-7b", messages=[{"role": "user", "content": content}], max_tokens=12, temperature=0)
    assert completion.choices[0].message.content and completion.usage.completion_tokens > 0
    answer = Client(app.url, verbose=False).predict("What do you hear?", audio=handle_file(str(MEDIA["audio"])), api_name="/chat", **GREEDY)
    assert answer and "###" not in answer


def test_the_int4_model_answers_on_the_page(page: Page, app_url: str) -> None:
    open_app(page, app_url)
    ask(page, "Hello! Who are you?")
    assert wait_for_answer(page, 1)
    assert "LLM in 4bit" in page.locator("body").inner_text()
