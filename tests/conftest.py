"""Shared fixtures: one tiny model set in the released formats, made by the project's own code."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pandagpt_demo.config import ModelConfig, ServingConfig
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.serving.engine import Engine
from pandagpt_demo.serving.start import start_engine
from pandagpt_demo.weights.synthetic import make_tiny


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory: pytest.TempPathFactory) -> ModelConfig:
    return make_tiny(tmp_path_factory.mktemp("checkpoints") / "tiny")


@pytest.fixture(scope="session")
def tiny_model(tiny_config: ModelConfig) -> PandaGPT:
    return PandaGPT.load(tiny_config)


@pytest.fixture(scope="session")
def tiny_engine(tiny_model: PandaGPT) -> Engine:
    """The inline engine (decoding in the caller's thread) for the tiny model."""
    return start_engine(tiny_model, ServingConfig.inline())


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def app_url(tiny_config: ModelConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real app (`python app.py --model tiny`) running in a subprocess, once its model is ready."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("app") / "app.log"
    checkpoints = tiny_config.files.imagebind_path.parent.parent
    command = [
        sys.executable,
        "app.py",
        "--model",
        "tiny",
        "--checkpoints",
        str(checkpoints),
        "--port",
        str(port),
        "--concurrency",
        "4",
        "--max-file-mb",
        "5",
    ]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_ready(url, process, log_path)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


REPO_ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_ready(url: str, process: subprocess.Popen, log_path: Path, timeout: float = 180) -> None:
    """Poll the /chat API with a text-only question until the model answers."""
    from gradio_client import Client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            Client(url, verbose=False).predict("ready?", max_new_tokens=1, api_name="/chat")
            return
        except Exception:  # not listening yet, or the model is still loading
            time.sleep(1)
    raise TimeoutError(f"the app was not ready after {timeout} s:\n{log_path.read_text()}")


@pytest.fixture
def start(tiny_config: ModelConfig, tmp_path: Path) -> Iterator[Callable[..., object]]:
    """Start launched apps (tests/launched.py `App`, same arguments but the config); each is stopped after the test."""
    from tests.launched import App

    apps: list = []

    def make(*flags: str, **options: object):
        apps.append(App(tiny_config, tmp_path, *flags, **options))
        return apps[-1]

    yield make
    for app in apps:
        app.stop()
