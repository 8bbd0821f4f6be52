"""The per-session embedding cache: encoded once per content, re-encoded on change, dropped on removal."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from pandagpt_demo.app.conversation.embeddings import EmbeddingCache
from pandagpt_demo.model.modalities import MediaError, Modality
from pandagpt_demo.model.pandagpt import PandaGPT
from tests.media import write_image, write_thermal


def test_cache_hit_change_and_removal(tiny_model: PandaGPT, tmp_path: Path) -> None:
    image, thermal = tmp_path / "a.png", tmp_path / "t.png"
    write_image(image, seed=1)
    write_thermal(thermal)
    cache = EmbeddingCache()
    first = cache.vectors([(Modality.IMAGE, image), (Modality.THERMAL, thermal)], tiny_model.embed_file)
    assert cache.encodes == 2
    copy = tmp_path / "copy_of_a.png"  # same content under another name (a re-upload) is a hit
    shutil.copy(image, copy)
    again = cache.vectors([(Modality.IMAGE, copy), (Modality.THERMAL, thermal)], tiny_model.embed_file)
    assert cache.encodes == 2
    torch.testing.assert_close(again[0], first[0])

    write_image(image, seed=2)  # the same path, new content: re-encoded, not stale
    changed = cache.vectors([(Modality.IMAGE, image), (Modality.THERMAL, thermal)], tiny_model.embed_file)
    assert cache.encodes == 3
    assert not torch.allclose(changed[0], first[0])
    torch.testing.assert_close(changed[0], tiny_model.embed_file(Modality.IMAGE, image))

    twice = cache.vectors([(Modality.IMAGE, image), (Modality.IMAGE, image)], tiny_model.embed_file)
    assert len(twice) == 2 and len(cache) == 1 and cache.encodes == 3, "a kind may come twice; thermal no longer given is dropped"
    cache.vectors([(Modality.THERMAL, image)], tiny_model.embed_file)
    assert cache.encodes == 4, "the same file taken as another kind is another vector"
    with pytest.raises(MediaError, match="image file 'gone.png'"):
        cache.vectors([(Modality.IMAGE, tmp_path / "gone.png")], tiny_model.embed_file)
    assert len(cache) == 1  # a bad file leaves what was cached
    cache.clear()
    assert len(cache) == 0


@pytest.mark.parametrize("kind", ["device", "pipe", "folder"])
def test_files_that_are_not_regular_are_refused_before_reading(tmp_path: Path, kind: str) -> None:
    """Hashing /dev/zero or a pipe would never end: such paths are refused by their type."""
    if kind == "device":
        path = Path("/dev/zero")
    elif kind == "pipe":
        path = tmp_path / "pipe.wav"
        os.mkfifo(path)
    else:
        path = tmp_path / "folder.wav"
        path.mkdir()

    def encode(modality: Modality, path: str | Path) -> torch.Tensor:
        raise AssertionError("nothing may be encoded")

    cache = EmbeddingCache()
    with pytest.raises(MediaError, match=f"audio file '{path.name}'.*(not a regular file|folder)"):
        cache.vectors([(Modality.AUDIO, path)], encode)
    assert len(cache) == 0
