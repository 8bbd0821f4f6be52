"""Pictures of what ImageBind took in from a file, drawn from the figures of model/intake.py and the
pixels or samples found with them: an image (or thermal image, or depth map) with the part outside
the crop dimmed and the crop's box drawn; a video's ten frames with their times and the three crops
of each; a sound's waveform with the heard clips lit; an IMU recording with its window lit.

They are PNGs beside the previews (one per content and kind), so the upload janitor keeps them
exactly as long as a session shows them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pandagpt_demo.model.intake import Intake, clock
from pandagpt_demo.model.modalities import Modality

from .previews import DEPTH, HEAT, coloured, imu_plot

SIDE = 360  # pixels, the longer side of an image's picture
WIDE = 600  # pixels, the width of a waveform's or an IMU recording's picture
FRAME_HEIGHT = 72  # pixels, each of a video's frames
BOX = (255, 214, 10)  # the crop's outline
CROPS = ((255, 214, 10), (0, 200, 255), (255, 80, 160))  # a video's three crops
LIT = (249, 142, 9)  # what was heard or taken in
DIM = (200, 200, 200)  # what was not
FONT = ImageFont.load_default(12)


def _dimmed_outside(picture: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    """`picture` darkened except inside `box` (in its own pixels), with the box outlined."""
    dark = Image.blend(picture, Image.new("RGB", picture.size), 0.6)
    left, top, right, bottom = (round(v) for v in box)
    dark.paste(picture.crop((left, top, right, bottom)), (left, top))
    ImageDraw.Draw(dark).rectangle((left, top, right - 1, bottom - 1), outline=BOX, width=3)
    return dark


def square_picture(intake: Intake) -> Image.Image:
    """An image-like file as ImageBind saw it: the crop lit, the rest dimmed."""
    material = intake.material
    if intake.kind is Modality.DEPTH:
        picture = coloured(material, DEPTH)
    elif intake.kind is Modality.THERMAL:
        picture = coloured(np.asarray(material, dtype=np.float32) / 255.0, HEAT)
    else:
        picture = material.convert("RGB")
        picture.thumbnail((SIDE, SIDE))
    if max(picture.size) < SIDE:  # small files and the colour maps' thumbnails: drawn at a readable size
        scale = SIDE / max(picture.size)
        picture = picture.resize((max(round(picture.width * scale), 1), max(round(picture.height * scale), 1)), Image.Resampling.NEAREST)
    sx, sy = picture.width / intake.width, picture.height / intake.height
    box = intake.crops[0]
    return _dimmed_outside(picture, (box.left * sx, box.top * sy, box.right * sx, box.bottom * sy))


def video_picture(intake: Intake) -> Image.Image:
    """The ten frames seen, a column per 2 s clip (its first frame above its last), each with the
    three crops outlined and its time under it."""
    width = max(round(FRAME_HEIGHT * intake.width / intake.height), 1)
    label = 16
    columns = len(intake.frames) // 2
    canvas = Image.new("RGB", (columns * (width + 6) + 6, 2 * (FRAME_HEIGHT + label + 4) + 4), "white")
    draw = ImageDraw.Draw(canvas)
    sx, sy = width / intake.width, FRAME_HEIGHT / intake.height
    for number, frame in enumerate(intake.frames):
        column, row = divmod(number, 2)
        x, y = 6 + column * (width + 6), 4 + row * (FRAME_HEIGHT + label + 4)
        canvas.paste(Image.fromarray(intake.material[frame.index]).resize((width, FRAME_HEIGHT), Image.Resampling.BILINEAR), (x, y))
        for colour, box in zip(CROPS, intake.crops):
            draw.rectangle((x + box.left * sx, y + box.top * sy, x + box.right * sx - 1, y + box.bottom * sy - 1), outline=colour, width=1)
        draw.text((x, y + FRAME_HEIGHT + 2), f"{clock(frame.time, tenths=intake.duration < 60)} · #{frame.index}", fill="black", font=FONT)
    return canvas


def _lit_spans(draw: ImageDraw.ImageDraw, intake: Intake, width: int, top: int, bottom: int) -> list[tuple[int, int]]:
    """Shade each heard span across [top, bottom) and return its pixel columns."""
    columns = []
    for span in intake.spans:
        start = round(span.start / intake.duration * width)
        end = max(round(min(span.end, intake.duration) / intake.duration * width), start + 1)
        draw.rectangle((start, top, end - 1, bottom - 1), fill=(255, 236, 200))
        columns.append((start, end))
    return columns


def waveform_picture(intake: Intake) -> Image.Image:
    """The recording's waveform, grey, with the three clips ImageBind heard shaded and lit, and
    their start times above them."""
    height, top = 130, 18
    canvas = Image.new("RGB", (WIDE, height + top + 16), "white")
    draw = ImageDraw.Draw(canvas)
    lit = _lit_spans(draw, intake, WIDE, top, top + height)
    low, high = intake.material
    peak = max(float(np.abs(intake.material).max()), 1e-6)
    xs = np.linspace(0, WIDE - 1, len(low))
    middle = top + height / 2
    for x, a, b in zip(xs, low, high):
        colour = LIT if any(start <= x < end for start, end in lit) else DIM
        draw.line((float(x), middle - b / peak * height / 2, float(x), middle - a / peak * height / 2 + 1), fill=colour)
    for (start, _), span in zip(lit, intake.spans):
        draw.text((start + 2, 2), clock(span.start), fill="black", font=FONT)
    draw.text((2, top + height + 2), "0:00", fill="black", font=FONT)
    draw.text((WIDE - 32, top + height + 2), clock(intake.duration), fill="black", font=FONT)
    return canvas


def imu_picture(intake: Intake) -> Image.Image:
    """The six channels, with the window ImageBind took in lit and the rest dimmed."""
    plot = imu_plot(intake.material, width=WIDE, height=150)
    span = intake.spans[0]
    start, end = round(span.start / intake.duration * WIDE), round(span.end / intake.duration * WIDE)
    dimmed = Image.blend(plot, Image.new("RGB", plot.size, "white"), 0.7)
    dimmed.paste(plot.crop((start, 0, end, plot.height)), (start, 0))
    canvas = Image.new("RGB", (WIDE, plot.height + 16), "white")
    canvas.paste(dimmed, (0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((start, 0, max(end - 1, start), plot.height - 1), outline=LIT, width=2)
    draw.text((2, plot.height + 2), "0:00", fill="black", font=FONT)
    draw.text((WIDE - 32, plot.height + 2), clock(intake.duration), fill="black", font=FONT)
    return canvas


def picture_of(intake: Intake) -> Image.Image:
    """The picture of what ImageBind took in from one file (its `material` must be present)."""
    if intake.kind is Modality.VIDEO:
        return video_picture(intake)
    if intake.kind is Modality.AUDIO:
        return waveform_picture(intake)
    if intake.kind is Modality.IMU:
        return imu_picture(intake)
    return square_picture(intake)


def save_picture(intake: Intake, target: Path) -> None:
    """Write the picture to `target` whole (through a partial file), for a page to show."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part.png")
    picture_of(intake).save(partial)
    partial.replace(target)
