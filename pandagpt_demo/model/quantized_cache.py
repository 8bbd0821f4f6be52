"""A folder of quantized LLM weights, written once and read at later starts in seconds.

Quantizing 7B from its float16 checkpoint reads 13.5 GB and rounds 6.7 billion weights; the result
is a few GB. It is kept as safetensors shards (`part-NNNNN.safetensors`) whose metadata say what they
were made from and how, so nothing stale is ever read:

- `identity`: the quantization scheme, compute dtype, LoRA settings, torch version and CPU vector
  width (the int4 kernel's packed layout depends on the last two);
- `sources`: each source file's name, size, modification time and sha256. A file whose size and
  time still match is trusted; one whose time changed is hashed again, and used only if its bytes
  are the same;
- `write_id`: one per write, in every shard, so shards of two writes are never mixed.

Shards are written into a temporary folder that replaces the old one only when complete: a start
killed while writing leaves the previous cache (or none), never half of one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from pandagpt_demo.files import sha256_file

from .tensorfiles import TensorFile, UnreadableFile, shard_groups

log = logging.getLogger(__name__)

METADATA_KEY = "pandagpt_quantized"
SHARD_BYTES = 1_000_000_000  # per file: a write holds at most one shard's bytes beyond the model


@dataclass(frozen=True)
class Source:
    """One file the cache was made from, as it was then."""

    name: str
    size: int
    mtime_ns: int
    sha256: str

    @classmethod
    def of(cls, path: Path) -> Source:
        stat = path.stat()
        return cls(path.name, stat.st_size, stat.st_mtime_ns, sha256_file(path))

    def still(self, path: Path) -> bool:
        """Whether `path` holds the same bytes: by size and time, else by hashing it again."""
        try:
            stat = path.stat()
        except OSError:
            return False
        if stat.st_size != self.size:
            return False
        return stat.st_mtime_ns == self.mtime_ns or sha256_file(path) == self.sha256


class QuantizedCache:
    """The cache folder for one model set and one quantization setting."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def shards(self) -> list[Path]:
        return sorted(self.folder.glob("part-*.safetensors")) if self.folder.is_dir() else []

    def read(self, identity: dict[str, object], sources: list[Path], device: torch.device | str) -> dict[str, torch.Tensor] | None:
        """The cached tensors on `device`, or None (why, in the log) if there are none or they are stale."""
        shards = self.shards()
        if not shards:
            return None
        reason = self._stale(shards, identity, sources)
        if reason is not None:
            log.info("quantized cache %s is not used: %s", self.folder, reason)
            return None
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            with TensorFile(shard) as file:
                state.update({key: file.take(key, device) for key in file.keys()})
        return state

    def _stale(self, shards: list[Path], identity: dict[str, object], sources: list[Path]) -> str | None:
        """Why the shards cannot be used, or None if they can."""
        try:
            stamps = [_metadata(shard) for shard in shards]
        except (UnreadableFile, ValueError, KeyError) as error:
            return f"unreadable ({error})"
        first = stamps[0]
        if any(stamp["write_id"] != first["write_id"] for stamp in stamps) or first["shards"] != len(shards):
            return "its shards are not one complete write"
        if first["identity"] != identity:
            changed = sorted(key for key in {*identity, *first["identity"]} if identity.get(key) != first["identity"].get(key))
            return f"made with other settings ({', '.join(changed)})"
        recorded = {entry["name"]: Source(**entry) for entry in first["sources"]}
        if sorted(recorded) != sorted(path.name for path in sources):
            return "made from other files"
        changed_files = [path.name for path in sources if not recorded[path.name].still(path)]
        if changed_files:
            return f"{', '.join(changed_files)} changed since"
        return None

    def write(self, state: dict[str, torch.Tensor], identity: dict[str, object], sources: list[Path]) -> None:
        """Write `state` as the cache of `sources` (hashed here: the one read of their bytes this costs)."""
        from safetensors.torch import save_file

        stamp = {
            "identity": identity,
            "sources": [asdict(Source.of(path)) for path in sources],
            "write_id": uuid.uuid4().hex,
        }
        groups = shard_groups({key: tensor.numel() * tensor.element_size() for key, tensor in state.items()}, SHARD_BYTES)
        stamp["shards"] = len(groups)
        metadata = {METADATA_KEY: json.dumps(stamp)}
        staging = self.folder.with_name(f"{self.folder.name}.partial-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            for number, keys in enumerate(groups, start=1):
                save_file({key: state[key].contiguous() for key in keys}, staging / f"part-{number:05d}.safetensors", metadata=metadata)
            if self.folder.exists():
                shutil.rmtree(self.folder)
            staging.rename(self.folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _metadata(shard: Path) -> dict:
    from safetensors import safe_open

    try:
        with safe_open(str(shard), framework="pt") as file:
            return json.loads((file.metadata() or {})[METADATA_KEY])
    except Exception as error:  # safetensors raises several types for a damaged file
        raise UnreadableFile(f"{shard.name}: {error}") from error
