"""`python tests/tiny7b_app.py ARGS` runs app.py with the 7b size at the tiny model's shapes: its
names, folder layout and download sources are the real 7b's, its weights small enough for a test
(the real files are 19 GB). Everything else is the real app. The `seven_b` fixture patches the same."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from pandagpt_demo import config as config_module
from pandagpt_demo.config import ImageBindArch, ModelConfig


def patch_7b(setitem: Callable = lambda d, k, v: d.__setitem__(k, v), setattr_: Callable = setattr) -> None:
    """Give 7b the tiny shapes (with `monkeypatch.setitem/setattr` in a test, undone after it)."""
    setitem(config_module.LLAMA_SHAPES, "7b", config_module.LLAMA_SHAPES["tiny"])
    preset = ModelConfig.preset.__func__

    def tiny_shaped(cls, size: str, checkpoints_dir: Path | str = "checkpoints", **overrides: object) -> ModelConfig:
        config = preset(cls, size, checkpoints_dir, **overrides)
        return config if size == "tiny" else config.updated(imagebind=ImageBindArch.tiny())

    setattr_(ModelConfig, "preset", classmethod(tiny_shaped))


if __name__ == "__main__":
    patch_7b()
    from pandagpt_demo.app.server import main

    main(sys.argv[1:])
