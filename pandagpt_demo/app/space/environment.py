"""What a Hugging Face Space's environment says, and what the app makes of it at start.

A Space sets `SPACE_ID` (owner/name); ZeroGPU hardware sets `SPACES_ZERO_GPU`; persistent storage,
when the Space has it, is mounted at `/data`. From these: where the weights live (`/data` survives
restarts; without it, the Hugging Face cache folder, which lasts until the Space restarts) and
whether to fetch them at start: yes, on GPU hardware and on CPU hardware alike (on the CPU the app
then runs the LLM in the precision that fits the Space's memory: int4 for 7B on a free 16 GB Space,
app/precision.py). `PANDAGPT_DOWNLOAD` overrides: a size to fetch (and run), or `no`.
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

    def to_fetch(self, model: str, asked: bool) -> str | None:
        """The size to fetch while serving, or None. `asked`: the --download flag."""
        if self.download in NO:
            return None
        if self.download is not None:
            return self.download
        if asked or self.space_id is not None:
            return model if model != "tiny" else None
        return None
