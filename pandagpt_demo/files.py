"""Facts about files that several layers state: a file's sha256, and a size as people read it."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tqdm import tqdm

BLOCK = 8 * 1024**2
_BAR_BYTES = 256 * 1024**2  # files larger than this show a progress bar while hashed


def sha256_file(path: Path | str, label: str | None = None) -> str:
    """The file's sha256 (hex), read in 8 MiB blocks; a progress bar for large files (checkpoints)."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256()
    with (
        open(path, "rb") as file,
        tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=f"sha256 {label or path.name}", disable=size < _BAR_BYTES) as bar,
    ):
        while block := file.read(BLOCK):
            digest.update(block)
            bar.update(len(block))
    return digest.hexdigest()


def human_size(size: float) -> str:
    """Bytes in decimal units, as the Hub and disk tools print them: '13.48 GB', '146.88 kB', '300 B'."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}"
    return f"{size:.0f} B"
