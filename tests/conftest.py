"""Shared fixtures: one tiny model set in the released formats, made by the project's own code."""

from __future__ import annotations

from pathlib import Path

import pytest

from pandagpt_demo.config import ModelConfig
from pandagpt_demo.model import PandaGPT
from pandagpt_demo.weights import make_tiny


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory: pytest.TempPathFactory) -> ModelConfig:
    return make_tiny(tmp_path_factory.mktemp("checkpoints") / "tiny")


@pytest.fixture(scope="session")
def tiny_model(tiny_config: ModelConfig) -> PandaGPT:
    return PandaGPT.load(tiny_config)


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")
