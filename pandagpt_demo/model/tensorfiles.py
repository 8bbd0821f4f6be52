"""Reading checkpoint files cheaply: tensor names and shapes without loading the weights.

- `*.safetensors`: the JSON header (`safe_open`); a tensor is read only when asked for.
- `*.bin`, `*.pt`, `*.pth` (torch's zip format): `torch.load(mmap=True)`: the pickle is read, the
  tensors stay on disk until touched. Old non-zip files are loaded whole.
- A Hugging Face folder: its weight files, from `*.index.json` when sharded.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from pandagpt_demo.errors import PandaGPTError, first_line

# Hugging Face weight layouts, preferred first: (index file, single file, the name of any of its shards)
WEIGHT_LAYOUTS = (
    ("model.safetensors.index.json", "model.safetensors", re.compile(r"model(-\d+-of-\d+)?\.safetensors")),
    ("pytorch_model.bin.index.json", "pytorch_model.bin", re.compile(r"pytorch_model(-\d+-of-\d+)?\.bin")),
)


class UnreadableFile(PandaGPTError, ValueError):
    """A file that is not a readable checkpoint (truncated, corrupt, or another format)."""


def weight_files(folder: Path) -> tuple[Path | None, list[str]]:
    """The index file (or None) and the weight file names of a Hugging Face folder ([] if none).

    Raises UnreadableFile for an index that is not valid JSON.
    """
    folder = Path(folder)
    for index_name, single_name, _ in WEIGHT_LAYOUTS:
        index = folder / index_name
        if index.exists():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            except (OSError, ValueError, KeyError, TypeError) as error:
                raise UnreadableFile(f"'{index}' is not a valid weight index ({error})") from error
            return index, sorted(set(weight_map.values()))
        if (folder / single_name).exists():
            return None, [single_name]
    return None, []


class TensorFile:
    """One checkpoint file: `keys()`, `shape(key)`, `get(key)`, nothing loaded up front."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            if self.path.suffix == ".safetensors":
                from safetensors import safe_open

                self._safe = safe_open(str(self.path), framework="pt")
                self._keys = list(self._safe.keys())
                self._state = None
            else:
                self._safe = None
                self._state = _torch_load(self.path)
                self._keys = list(self._state)
        except UnreadableFile:
            raise
        except Exception as error:  # safetensors and torch raise many types for a damaged file
            raise UnreadableFile(f"not a readable checkpoint: truncated or damaged? ({type(error).__name__}: {first_line(error)})") from error

    def keys(self) -> list[str]:
        return self._keys

    def shape(self, key: str) -> tuple[int, ...]:
        if self._safe is not None:
            return tuple(self._safe.get_slice(key).get_shape())
        return tuple(self._state[key].shape)

    def get(self, key: str) -> torch.Tensor:
        if self._safe is not None:
            return self._safe.get_tensor(key)
        return self._state[key]


def _torch_load(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as error:
        if "zip" not in str(error).lower():
            raise
        state = torch.load(path, map_location="cpu", weights_only=True)  # legacy format: no mmap
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UnreadableFile("not a state dict of tensors")
    return state


class FolderTensors:
    """All weight files of a Hugging Face folder as one lazy mapping (opened as needed).

    Every error (UnreadableFile) names the file at fault: a folder's files are many, and a message
    without the name leaves the user to find the truncated shard.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        index, names = weight_files(self.folder)
        if not names:
            raise UnreadableFile(f"no weights in '{self.folder}' (looked for {', '.join(n for pair in WEIGHT_LAYOUTS for n in pair)})")
        self.files = {name: _open_listed(self.folder / name, index) for name in names}
        self.location = {key: name for name, file in self.files.items() for key in file.keys()}

    def __contains__(self, key: str) -> bool:
        return key in self.location

    def keys(self) -> list[str]:
        return list(self.location)

    def shape(self, key: str) -> tuple[int, ...]:
        return self.files[self.location[key]].shape(key)

    def get(self, key: str) -> torch.Tensor:
        return self.files[self.location[key]].get(key)


def _open_listed(path: Path, index: Path | None) -> TensorFile:
    """One weight file of a folder, its errors naming it (and the index that lists it, if missing)."""
    if not path.is_file():
        raise UnreadableFile(f"'{path}' is missing" + (f" (listed in '{index.name}')" if index else ""))
    try:
        return TensorFile(path)
    except UnreadableFile as error:
        raise UnreadableFile(f"'{path}': {error}; download it again") from error
