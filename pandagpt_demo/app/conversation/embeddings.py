"""Per-session embedding cache keyed by file content: ImageBind's vector of each file (before
llama_proj), what the answers and ImageBind's view of the inputs both start from.

The original demo kept an embedding as long as *some* file was given, so a replaced file kept its
stale embedding. Here each vector is keyed by (modality, sha256 of the bytes): a changed file is
re-encoded, and entries for files no longer given are dropped. Vectors of one model are never
given to another (the tiny model's, once the real weights are swapped in): the cache empties.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from pandagpt_demo.files import sha256_file
from pandagpt_demo.model.modalities import MediaError, Modality, checked_file

CacheKey = tuple[Modality, str]


class EmbeddingCache:
    """Vectors of the files currently given, each computed once per content."""

    def __init__(self) -> None:
        self._vectors: dict[CacheKey, torch.Tensor] = {}
        self._source: object = None  # what made the vectors (a model's config)
        self.encodes = 0  # how many vectors were made: what the cache saves is visible

    def vectors(
        self,
        files: Sequence[tuple[Modality, str | Path]],
        encode: Callable[[Modality, str | Path], torch.Tensor],
        source: object = None,
    ) -> list[torch.Tensor]:
        """The vector of every given (kind, file), in order; encodes only new contents (the same
        content given twice is encoded once), after forgetting the files no longer given (`keys`).
        If `encode` raises (a bad file), the vectors made so far are kept and the error propagates."""
        result: list[torch.Tensor] = []
        for (modality, path), key in zip(files, self.keys(files, source)):
            if key not in self._vectors:
                self.add(key, encode(modality, path))
            result.append(self._vectors[key])
        return result

    def keys(self, files: Sequence[tuple[Modality, str | Path]], source: object = None) -> list[CacheKey]:
        """The key of every given (kind, file), in order; the vectors of files not given are forgotten.
        `source` names what makes the vectors (the model's config): vectors of another source are dropped.
        A file that cannot be read raises MediaError, changing nothing."""
        keys = [(modality, self._sha256(modality, path)) for modality, path in files]
        if source != self._source:
            self._vectors.clear()
            self._source = source
        self._vectors = {key: vector for key, vector in self._vectors.items() if key in keys}
        return keys

    @staticmethod
    def _sha256(modality: Modality, path: str | Path) -> str:
        try:
            return sha256_file(checked_file(modality, path))
        except OSError as error:
            raise MediaError(modality, path, f"it cannot be read ({error.strerror or error})") from error

    def get(self, key: CacheKey) -> torch.Tensor | None:
        return self._vectors.get(key)

    def add(self, key: CacheKey, vector: torch.Tensor) -> None:
        """Keep `vector`, made from the file of `key` (by `vectors`, or elsewhere: a ZeroGPU call)."""
        self._vectors[key] = vector
        self.encodes += 1

    def clear(self) -> None:
        self._vectors.clear()

    def __len__(self) -> int:
        return len(self._vectors)
