"""How an attached file looks in the conversation: a chat message's content item for each kind.

Photos, sounds and videos are shown as they are (the chat's thumbnails and players). A thermal
image and a depth map get a colour map (a grey thermal picture or a 16-bit depth map shows little
as it is), and an IMU recording a small plot of its six channels; those pictures are PNGs written
once per content and kind into a `previews` folder inside the upload folder, so the upload janitor
keeps them exactly as long as a session holds them (`paths`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pandagpt_demo.app.conversation.chatlog import Attachment
from pandagpt_demo.model.modalities import Modality, read_disparity, read_imu

log = logging.getLogger(__name__)

THUMBNAIL = 320  # pixels, the longer side of a rendered preview
BROWSER_IMAGES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp")
# Anchor colours of the two maps (dark to bright), interpolated into 256 entries.
HEAT = ((0, 0, 4), (87, 16, 110), (188, 55, 84), (249, 142, 9), (252, 255, 164))  # inferno-like: thermal
DEPTH = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))  # viridis-like: near is bright
IMU_COLOURS = ((214, 39, 40), (44, 160, 44), (31, 119, 180), (255, 127, 14), (148, 103, 189), (23, 190, 207))


def colour_table(anchors: tuple[tuple[int, int, int], ...]) -> np.ndarray:
    """A (256, 3) uint8 lookup table through the anchor colours."""
    points = np.linspace(0, 255, len(anchors))
    return np.stack([np.interp(np.arange(256), points, [a[c] for a in anchors]) for c in range(3)], axis=1).astype(np.uint8)


def coloured(values: np.ndarray, anchors: tuple[tuple[int, int, int], ...]) -> Image.Image:
    """A 2-D array in [0, 1] as an RGB picture through a colour map, at most THUMBNAIL on its longer side."""
    index = np.clip(np.nan_to_num(values) * 255, 0, 255).astype(np.uint8)
    image = Image.fromarray(colour_table(anchors)[index], "RGB")
    image.thumbnail((THUMBNAIL, THUMBNAIL))
    return image


def imu_plot(samples: np.ndarray, width: int = THUMBNAIL, height: int = 160) -> Image.Image:
    """The six channels of a (6, N) recording as lines, each scaled to its own range."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    n = samples.shape[1]
    step = max(n // width, 1)
    for channel, colour in zip(samples, IMU_COLOURS):
        values = channel[::step].astype(np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) if high > low else np.full_like(values, 0.5)
        xs = np.linspace(0, width - 1, len(values))
        draw.line([(float(x), float((1 - y) * (height - 8) + 4)) for x, y in zip(xs, scaled)], fill=colour, width=1)
    return image


class Previews:
    """Makes (once) and finds the preview of each attached file."""

    def __init__(self, upload_root: Path | str) -> None:
        self.folder = Path(upload_root) / "previews"

    def _rendered(self, attachment: Attachment) -> Path | None:
        """The PNG that stands for this file, or None if it is shown as it is."""
        kind, suffix = attachment.kind, Path(attachment.name).suffix.lower()
        if kind in (Modality.AUDIO, Modality.VIDEO) or (kind is Modality.IMAGE and suffix in BROWSER_IMAGES):
            return None
        return self.folder / f"{attachment.sha256[:32]}-{kind.value}.png"

    def paths(self, attachments: list[Attachment]) -> list[Path]:
        """The rendered previews of these files (to be held as long as they are shown)."""
        return [path for a in attachments if (path := self._rendered(a)) is not None]

    def intake_picture(self, attachment: Attachment) -> Path:
        """Where the picture of what ImageBind took in from this file, as this kind, is kept (intake_panel.py)."""
        return self.folder / f"{attachment.sha256[:32]}-{attachment.kind.value}-intake.png"

    def item(self, attachment: Attachment) -> dict | None:
        """The chat's content item for this file, or None if it is not on the server (or cannot be
        drawn), or is a video's sound (the video shows it)."""
        if attachment.path is None or attachment.sound_of_video:
            return None
        target = self._rendered(attachment)
        if target is None:
            return {"path": str(attachment.path), "alt_text": attachment.name}
        if not target.exists():
            try:
                self._render(attachment, target)
            except Exception as error:  # noqa: BLE001 - a file the loader refuses says why when it is used
                log.info("no preview of %s: %s", attachment.name, error)
                return None
        return {"path": str(target), "alt_text": f"{attachment.name} ({attachment.kind.value})"}

    def _render(self, attachment: Attachment, target: Path) -> None:
        kind, path = attachment.kind, attachment.path
        if kind is Modality.THERMAL:
            with Image.open(path) as img:
                picture = coloured(np.asarray(img.convert("L"), dtype=np.float32) / 255.0, HEAT)
        elif kind is Modality.DEPTH:
            picture = coloured(read_disparity(path), DEPTH)
        elif kind is Modality.IMU:
            picture = imu_plot(read_imu(path))
        else:  # an image format browsers do not show (TIFF)
            with Image.open(path) as img:
                picture = img.convert("RGB")
                picture.thumbnail((THUMBNAIL, THUMBNAIL))
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".part.png")
        picture.save(partial)
        partial.replace(target)
