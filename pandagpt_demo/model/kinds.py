"""What kind of input a file is, guessed from the file itself, and the kinds it could also be.

A file attached to a message carries no modality, so the page guesses one and lets the user change
it where the file could be more than one (a PNG could be a photo, a thermal image or a depth map):

* by suffix: audio and video containers, `.csv` (IMU), JPEG and the other photo formats (image);
* a PNG or TIFF by its pixels: one 16-bit channel is depth (disparity, as the depth loader reads
  it), one 8-bit channel is thermal (thermal cameras give one channel; a photo has three), else image;
* a `.npy` by its shape: (N, 6) or (6, N) is IMU, other 2-D arrays are depth;
* a `.webm` by its streams: video if it has a picture, else audio (browsers record sound as WebM).
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image

from .modalities import IMU_CHANNELS, Modality

_BY_SUFFIX: dict[str, Modality] = {
    **dict.fromkeys((".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".opus"), Modality.AUDIO),
    **dict.fromkeys((".mp4", ".mov", ".avi", ".mkv"), Modality.VIDEO),
    **dict.fromkeys((".jpg", ".jpeg", ".bmp", ".gif", ".webp"), Modality.IMAGE),
    ".csv": Modality.IMU,
}
_ONE_CHANNEL_16_BIT = ("I;16", "I;16B", "I;16L", "I")


def possible_kinds(path: str | Path) -> tuple[Modality, ...]:
    """Every modality whose loader accepts files with this suffix, in `Modality` order."""
    suffix = Path(path).suffix.lower()
    return tuple(m for m in Modality if suffix in m.extensions)


def guess_kind(path: str | Path) -> Modality | None:
    """The likeliest modality of the file at `path`; None if no loader takes its suffix. Never
    raises for a bad file: the loader names what is wrong with it when it is used."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in _BY_SUFFIX:
        return _BY_SUFFIX[suffix]
    try:
        if suffix in (".png", ".tif", ".tiff"):
            return _image_kind(path)
        if suffix == ".npy":
            return _array_kind(path)
        if suffix == ".webm":
            return _webm_kind(path)
    except Exception:  # noqa: BLE001 - unreadable: the suffix's first kind; its loader will say why
        pass
    kinds = possible_kinds(path)
    return kinds[0] if kinds else None


def _image_kind(path: Path) -> Modality:
    with Image.open(path) as img:
        mode = img.mode
    if mode in _ONE_CHANNEL_16_BIT:
        return Modality.DEPTH
    if mode == "L":
        return Modality.THERMAL
    return Modality.IMAGE


def _array_kind(path: Path) -> Modality:
    shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
    return Modality.IMU if len(shape) == 2 and IMU_CHANNELS in shape else Modality.DEPTH


def _webm_kind(path: Path) -> Modality:
    with av.open(str(path)) as container:
        return Modality.VIDEO if container.streams.video else Modality.AUDIO
