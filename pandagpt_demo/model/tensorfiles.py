"""Reading checkpoint files cheaply: tensor names and shapes without loading the weights, and
tensors one at a time without the file's bytes staying in memory beside them.

- `*.safetensors`: the JSON header (`safe_open`); the file is memory-mapped, a tensor read only
  when touched.
- `*.bin`, `*.pt`, `*.pth` (torch's zip format): `torch.load(mmap=True)`: the pickle is read, the
  tensors stay on disk until touched. Old non-zip files are loaded whole.
- Pages of a mapped file count in the process's resident memory for as long as they stay mapped,
  so `take` drops a tensor's pages once it has copied them (reading with `pread` instead would
  spare that, but measured half as fast here).
- A Hugging Face folder: its weight files, from `*.index.json` when sharded.

Loading a model takes each tensor to its device and dtype (`TensorFile.take`, `FolderTensors.take`,
or `FolderTensors.deferred` for transformers' `from_pretrained`), so no weight is held twice on the host.
"""

from __future__ import annotations

import ctypes
import functools
import json
import mmap
import re
from pathlib import Path
from types import TracebackType

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
    """One checkpoint file: `keys()`, `shape(key)`, `get(key)`, `take(key, ...)`, nothing loaded up front."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            if self.path.suffix == ".safetensors":
                from safetensors import safe_open

                self._safe = safe_open(str(self.path), framework="pt")
                self._keys = list(self._safe.keys())
                self._state, self._mapped = None, True
            else:
                self._safe = None
                self._state, self._mapped = _torch_load(self.path)
                self._keys = list(self._state)
        except UnreadableFile:
            raise
        except Exception as error:  # safetensors and torch raise many types for a damaged file
            raise UnreadableFile(f"not a readable checkpoint: truncated or damaged? ({type(error).__name__}: {first_line(error)})") from error

    def __enter__(self) -> TensorFile:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()

    def keys(self) -> list[str]:
        return self._keys

    def shape(self, key: str) -> tuple[int, ...]:
        if self._safe is not None:
            return tuple(self._safe.get_slice(key).get_shape())
        return tuple(self._state[key].shape)

    def get(self, key: str) -> torch.Tensor:
        """The tensor as stored: a view of the mapped file (loaded whole for old torch files)."""
        if self._safe is not None:
            return self._safe.get_tensor(key)
        return self._state[key]

    def take(self, key: str, device: torch.device | str, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The tensor on `device`, cast to `dtype` if it is a floating-point one, in memory of its own.

        The file's pages it was read from are dropped from this process's resident memory (they stay
        in the page cache, and are read again if touched), so a load never holds the file beside the
        model built from it.
        """
        source = self.get(key)
        taken = source.to(device, dtype if dtype is not None and source.is_floating_point() else source.dtype, copy=True)
        if self._mapped:
            _drop_pages(source)
        return taken

    def close(self) -> None:
        """Let go of the file: its handle, and its mapping once no tensor views it."""
        self._safe = None
        self._state = None


class DeferredTensor:
    """A tensor of a file, read when it is sliced: what transformers' `from_pretrained(state_dict=...)`
    takes in place of safetensors' lazy slices. Each is copied straight to `device` in `dtype` and its
    pages dropped (`TensorFile.take`), so only the tensors being read pass through the host, where
    transformers' own reading would keep every page of the file mapped to the end.

    `dtype` is the one `from_pretrained` is given: it casts every floating weight of a LLaMA to it
    (none is kept in float32), so casting here is the same single rounding, without a second copy.
    """

    def __init__(self, file: TensorFile, key: str, device: torch.device | str, dtype: torch.dtype) -> None:
        self.file = file
        self.key = key
        self.device = device
        self.dtype = dtype

    def __getitem__(self, index: object) -> torch.Tensor:
        return self.file.take(self.key, self.device, self.dtype)[index]


def _torch_load(path: Path) -> tuple[dict[str, torch.Tensor], bool]:
    """The state dict, and whether it is memory-mapped (torch's zip format) rather than loaded whole."""
    try:
        state, mapped = torch.load(path, map_location="cpu", weights_only=True, mmap=True), True
    except RuntimeError as error:
        if "zip" not in str(error).lower():
            raise
        state, mapped = torch.load(path, map_location="cpu", weights_only=True), False  # legacy format: no mmap
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UnreadableFile("not a state dict of tensors")
    return state, mapped


def _drop_pages(tensor: torch.Tensor) -> None:
    """Drop the pages of a memory-mapped tensor from this process's resident set.

    Only for a mapping of a file that nobody wrote to: the pages are read from the file again if
    touched (a neighbour sharing a page at either end loses nothing). Best effort: where madvise
    is missing (not Linux or macOS) the pages stay until the file is closed.
    """
    madvise = _madvise()
    if madvise is None:
        return
    if tensor.numel() == 0:
        return
    extent = 1 + sum((size - 1) * stride for size, stride in zip(tensor.shape, tensor.stride()))  # elements spanned
    start = tensor.data_ptr() // mmap.PAGESIZE * mmap.PAGESIZE
    end = -(-(tensor.data_ptr() + extent * tensor.element_size()) // mmap.PAGESIZE) * mmap.PAGESIZE
    madvise(start, end - start, mmap.MADV_DONTNEED)


@functools.cache
def _madvise():
    """libc's madvise(addr, length, advice), or None where the platform has none."""
    if not hasattr(mmap, "MADV_DONTNEED"):
        return None
    madvise = ctypes.CDLL(None, use_errno=True).madvise
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    madvise.restype = ctypes.c_int
    return madvise


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

    def take(self, key: str, device: torch.device | str, dtype: torch.dtype | None = None) -> torch.Tensor:
        """`TensorFile.take` from the file that holds `key`."""
        return self.files[self.location[key]].take(key, device, dtype)

    def deferred(self, device: torch.device | str, dtype: torch.dtype) -> dict[str, DeferredTensor]:
        """Every tensor, each read to `device` in `dtype` only when transformers asks for it (see `DeferredTensor`)."""
        return {key: DeferredTensor(self.files[name], key, device, dtype) for key, name in self.location.items()}

    def __enter__(self) -> FolderTensors:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        for file in self.files.values():
            file.close()


def _open_listed(path: Path, index: Path | None) -> TensorFile:
    """One weight file of a folder, its errors naming it (and the index that lists it, if missing)."""
    if not path.is_file():
        raise UnreadableFile(f"'{path}' is missing" + (f" (listed in '{index.name}')" if index else ""))
    try:
        return TensorFile(path)
    except UnreadableFile as error:
        raise UnreadableFile(f"'{path}': {error}; download it again") from error


def shard_groups(sizes: dict[str, int], limit: int) -> list[list[str]]:
    """Keys in order, cut into consecutive groups of at most `limit` bytes (a larger tensor alone), as weight files are sharded."""
    groups: list[list[str]] = [[]]
    size = 0
    for key, nbytes in sizes.items():
        if groups[-1] and size + nbytes > limit:
            groups.append([])
            size = 0
        groups[-1].append(key)
        size += nbytes
    return groups
