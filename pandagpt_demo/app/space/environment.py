"""What a Hugging Face Space's environment says, and what the app makes of it at start.

A Space sets `SPACE_ID` (owner/name); ZeroGPU hardware sets `SPACES_ZERO_GPU`; persistent storage,
when the Space has it, is mounted at `/data`. From these: where the weights live (`/data` survives
restarts; without it, the Hugging Face cache folder, which lasts until the Space restarts) and
whether to fetch them at start (on GPU hardware, yes; on CPU no, unless asked: 7B on CPU is not a
demo anyone waits for). `PANDAGPT_DOWNLOAD` overrides: a size to fetch (and run), or `no`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pandagpt_demo.config import MODEL_SIZES

from .zerogpu import on_zero_gpu

DOWNLOAD_ENV = "PANDAGPT_DOWNLOAD"
PERSISTENT_STORAGE = Path("/data")
NO = ("no", "none", "0", "false", "off")


@dataclass(frozen=True)
class SpaceEnv:
    space_id: str | None  # owner/name on a Space; None elsewhere
    zero_gpu: bool
    storage: Path | None  # persistent storage, if mounted and writable
    download: str | None  # $PANDAGPT_DOWNLOAD as given (a size, or one of NO), None if unset

    @classmethod
    def read(cls, environ: Mapping[str, str] = os.environ, storage: Path = PERSISTENT_STORAGE) -> SpaceEnv:
        download = environ.get(DOWNLOAD_ENV, "").strip().lower() or None
        if download is not None and download not in MODEL_SIZES and download not in NO:
            raise SystemExit(f"${DOWNLOAD_ENV} is '{download}': it takes a model size ({', '.join(MODEL_SIZES[:-1])}) or 'no'.")
        writable = storage.is_dir() and os.access(storage, os.W_OK)
        return cls(
            space_id=environ.get("SPACE_ID") or None,
            zero_gpu=on_zero_gpu(environ),
            storage=storage if writable else None,
            download=download,
        )

    def checkpoints(self) -> Path:
        """The default checkpoints folder: `checkpoints/` here; on a Space, its persistent storage or the HF cache."""
        if self.space_id is None:
            return Path("checkpoints")
        if self.storage is not None:
            return self.storage / "checkpoints"
        from huggingface_hub import constants

        return Path(constants.HF_HOME) / "pandagpt-checkpoints"

    def compile_cache(self) -> Path | None:
        """Where compiled decode steps are kept: a Space's persistent storage (its /tmp is wiped at each
        restart); None elsewhere (the compilers' own folders, which outlive a restart of the app)."""
        if self.space_id is None or self.storage is None:
            return None
        return self.storage / "compile-cache"

    def to_fetch(self, model: str, asked: bool, gpu: bool) -> tuple[str | None, str | None]:
        """(the size to fetch while serving, or None; why not, when a Space would want to know).

        `asked`: the --download flag; `gpu`: whether answers would run on a GPU here.
        """
        if self.download in NO:
            return None, None
        if self.download is not None:
            return self.download, None
        if asked:
            return (model if model != "tiny" else None), None
        if self.space_id is None or model == "tiny":
            return None, None
        if not gpu:
            return None, (
                f"This Space runs on CPU hardware, so the {model} weights are not fetched: pick GPU hardware in the Space's "
                f"settings (they are then fetched at start), or set the variable {DOWNLOAD_ENV}={model} to fetch them anyway."
            )
        return model, None
