"""What ImageBind takes in from a file: the part of an image, the frames of a video, the seconds of
a sound, the samples of an IMU recording that its loader keeps.

Every figure comes from the loaders' own functions (modalities.py: the same resize and crop
arithmetic, the same clip sampler, the same decoded waveform and frames), so what is shown cannot
drift from what is encoded. Nothing here runs ImageBind. Each `Intake` holds the figures as data
(`as_data`, for the programs' endpoints), one plain sentence (`summary`), a short figure for an
answer's "Used:" line (`short`), whether the loss is large enough to say so when the file is
attached, and the pixels or samples a picture of it is drawn from (`material`, not data).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .modalities import (
    AUDIO_CLIP_SECONDS,
    AUDIO_RATE,
    IMAGE_SIZE,
    IMU_SAMPLES,
    MAX_PIXELS,
    VIDEO_CLIP_SECONDS,
    VIDEO_CLIPS,
    Modality,
    audio_clip_bounds,
    centre_crop_offset,
    clip_timepoints,
    decode_sampled_frames,
    has_sound_track,
    imu_window,
    open_image,
    read_disparity,
    read_imu,
    read_waveform,
    resized_size,
    scaled_frame_size,
    spatial_crop_offsets,
)

IMU_RATE = 200  # Hz: ImageBind's Ego4D windows are 2000 samples = 10 s (modalities.py)
LARGE_LOSS = 0.8  # below this fraction taken in, the loss is said when the file is attached
EXIF_ORIENTATION = 0x0112
EXIF_TURNS = {
    3: "upside down",
    6: "turned 90° clockwise",
    8: "turned 90° counter-clockwise",
    2: "mirrored",
    4: "mirrored",
    5: "mirrored",
    7: "mirrored",
}


@dataclass(frozen=True)
class Box:
    """A rectangle in the file's own pixels: [left, right) x [top, bottom)."""

    left: float
    top: float
    right: float
    bottom: float


@dataclass(frozen=True)
class Span:
    """[start, end) in seconds of the recording."""

    start: float
    end: float


@dataclass(frozen=True)
class Frame:
    """One frame ImageBind saw: its index in the video and its time."""

    index: int
    time: float


@dataclass(frozen=True)
class Intake:
    """What ImageBind takes in from one file (see the module docstring)."""

    kind: Modality
    summary: str
    short: str
    fraction: float  # of the file taken in: its area, its frames or its time
    large_loss: bool
    width: int | None = None  # pixels of the image or video as decoded
    height: int | None = None
    crops: tuple[Box, ...] = ()  # image: one; video: three per frame
    duration: float | None = None  # seconds (audio, video, IMU)
    spans: tuple[Span, ...] = ()  # audio: the three clips heard; IMU: its window
    frames: tuple[Frame, ...] = ()  # video: the ten frames seen
    samples: int | None = None  # IMU: how many the file holds
    padded: float | None = None  # seconds of silence or zeros added to reach a clip or window
    note: str = ""  # what else the encoder does with it (an EXIF turn not applied, a sound not used)
    material: object = field(default=None, repr=False, compare=False)  # what its picture is drawn from

    def as_data(self) -> dict:
        """The figures as plain JSON data (no pixels)."""
        data = {key: value for key, value in asdict(self).items() if key != "material" and value not in (None, (), "")}
        data["kind"] = self.kind.value
        return data


def clock(seconds: float, tenths: bool = False) -> str:
    """A time in a recording as m:ss (to the nearest second), or m:ss.s (`tenths`: in a short one,
    where whole seconds would say 0:00 four times)."""
    if tenths:
        tenth = int(round(seconds * 10))
        return f"{tenth // 600}:{tenth % 600 // 10:02d}.{tenth % 10}"
    whole = int(round(seconds))
    return f"{whole // 60}:{whole % 60:02d}"


def length(seconds: float) -> str:
    """A recording's length as people say it: "6 s", "1.5 s", "4 min", "4:10"."""
    if seconds < 1:
        return f"{seconds:.2g} s"
    if seconds < 60:
        return f"{seconds:.1f} s".replace(".0 s", " s") if seconds < 10 else f"{round(seconds)} s"
    return f"{round(seconds / 60)} min" if abs(seconds / 60 - round(seconds / 60)) < 1 / 120 else clock(seconds)


def _percent(fraction: float) -> str:
    return f"{fraction:.0%}" if fraction >= 0.01 else f"{fraction:.1%}"


def _union(spans: list[Span]) -> list[Span]:
    merged: list[Span] = []
    for span in sorted(spans, key=lambda s: s.start):
        if merged and span.start <= merged[-1].end:
            merged[-1] = Span(merged[-1].start, max(merged[-1].end, span.end))
        else:
            merged.append(span)
    return merged


def _square(kind: Modality, width: int, height: int, what: str, material: object, note: str = "") -> Intake:
    """An image-like file: Resize(224) then CenterCrop(224), as a box in the file's own pixels."""
    scaled_width, scaled_height = resized_size(width, height)
    left, top = centre_crop_offset(scaled_width, scaled_height)
    sx, sy = width / scaled_width, height / scaled_height
    box = Box(left * sx, top * sy, (left + IMAGE_SIZE) * sx, (top + IMAGE_SIZE) * sy)
    fraction = min((box.right - box.left) * (box.bottom - box.top) / (width * height), 1.0)
    cut = (width - (box.right - box.left), height - (box.bottom - box.top))
    if cut[0] >= 1 or cut[1] >= 1:
        sides = "left and right" if cut[0] >= 1 else "top and bottom"
        each = round(max(cut) / 2)
        summary = (
            f"ImageBind saw the centre {round(box.right - box.left)} × {round(box.bottom - box.top)} of this {width} × {height} {what} "
            f"({_percent(fraction)} of it, scaled to 224 × 224): about {each} px at the {sides} were not seen."
        )
    else:
        summary = f"ImageBind saw all of this {width} × {height} {what}, scaled to 224 × 224."
    summary += f" {note}" if note else ""
    short = f"centre {_percent(fraction)} seen" + ("; EXIF turn not applied" if note else "")
    return Intake(kind, summary, short, fraction, fraction < LARGE_LOSS or bool(note), width, height, (box,), note=note, material=material)


def image_intake(path: str | Path, kind: Modality = Modality.IMAGE) -> Intake:
    """An image or thermal image: the decoded pixels as stored (an EXIF turn is not applied, as
    ImageBind's loader does not), and the crop's box on them."""
    picture = open_image(kind, path, "RGB" if kind is Modality.IMAGE else "L", MAX_PIXELS)
    with Image.open(path) as raw:
        orientation = raw.getexif().get(EXIF_ORIENTATION, 1)
    turn = EXIF_TURNS.get(orientation)
    note = (
        f"Its EXIF orientation says it is shown {turn}; ImageBind, as the released weights were trained, reads the pixels as stored, "
        "so it saw the picture without that turn."
        if turn
        else ""
    )
    what = "thermal image" if kind is Modality.THERMAL else "image"
    return _square(kind, picture.width, picture.height, what, picture, note)


def depth_intake(path: str | Path) -> Intake:
    disparity = read_disparity(path)
    return _square(Modality.DEPTH, disparity.shape[1], disparity.shape[0], "depth map", disparity)


def audio_intake(path: str | Path, kind: Modality = Modality.AUDIO) -> Intake:
    """A sound (or a video's sound track): the three 2 s clips cut from the 16 kHz waveform."""
    waveform, recorded = read_waveform(path)
    duration = recorded / AUDIO_RATE
    clips = tuple(Span(start / AUDIO_RATE, end / AUDIO_RATE) for start, end in audio_clip_bounds(waveform.size(1)))
    heard = _union([Span(c.start, min(c.end, duration)) for c in clips])
    heard_seconds = sum(s.end - s.start for s in heard)
    padded = max(AUDIO_CLIP_SECONDS - duration, 0.0) or None
    fraction = min(heard_seconds / duration, 1.0)
    last = heard[-1].end
    if fraction >= 0.999:
        summary = f"All of this {length(duration)} recording was heard" + (f", padded with {length(padded)} of silence to 2 s." if padded else ".")
        short = f"all {length(duration)} heard"
    else:
        pieces = ", ".join(clock(s.start) for s in heard[:-1]) + (" and " if len(heard) > 1 else "") + clock(heard[-1].start)
        where = f"from {pieces}" if len(heard) > 1 else f"from {clock(heard[0].start)} to {clock(heard[0].end)}"
        summary = f"{length(heard_seconds)} of this {length(duration)} recording were heard, {where}; nothing after {clock(last)}."
        short = f"{length(heard_seconds)} of {length(duration)} heard"
    envelope = _envelope(waveform[:, :recorded].mean(dim=0).numpy())
    return Intake(kind, summary, short, fraction, fraction < LARGE_LOSS, duration=duration, spans=clips, padded=padded, material=envelope)


def _envelope(mono: np.ndarray, points: int = 1200) -> np.ndarray:
    """(2, points) min and max of the waveform in equal slices: what a waveform picture draws."""
    slices = np.array_split(mono, min(points, len(mono)))
    return np.array([[s.min() for s in slices], [s.max() for s in slices]], dtype=np.float32)


def video_intake(path: str | Path) -> Intake:
    """A video: the ten sampled frames (two per 2 s clip) and the three crops of each, as boxes in
    the frame's own pixels."""
    video = decode_sampled_frames(path)
    first = video.frames[video.indices[0][0]]
    height, width = first.shape[:2]
    scaled_height, scaled_width = scaled_frame_size(height, width)
    sy, sx = height / scaled_height, width / scaled_width
    crops = tuple(Box(x * sx, y * sy, (x + IMAGE_SIZE) * sx, (y + IMAGE_SIZE) * sy) for y, x in spatial_crop_offsets(scaled_height, scaled_width))
    frames = tuple(Frame(index, index / video.fps) for clip in video.indices for index in clip)
    duration = video.n_frames / video.fps
    seen = len({f.index for f in frames})
    fraction = seen / video.n_frames
    clips = clip_timepoints(duration, VIDEO_CLIP_SECONDS, VIDEO_CLIPS)
    times = ", ".join(clock(f.time, tenths=duration < 60) for f in frames[:: len(frames) // VIDEO_CLIPS])
    sound = has_sound_track(path)
    note = "Its own sound is not part of this input (it can join as an audio input of its own)." if sound else ""
    summary = (
        f"ImageBind saw {seen} of this {length(duration)} video's {video.n_frames} frames: the first and last of each of "
        f"its {len(clips)} clips of {VIDEO_CLIP_SECONDS} s (from {times}), each frame as three 224 × 224 crops."
    )
    summary += f" {note}" if note else ""
    short = f"{seen} of {video.n_frames} frames seen"
    large = duration > VIDEO_CLIPS * VIDEO_CLIP_SECONDS or bool(note)
    material = {i: video.frames[i] for i in sorted({f.index for f in frames})}
    return Intake(Modality.VIDEO, summary, short, fraction, large, width, height, crops, duration, frames=frames, note=note, material=material)


def imu_intake(path: str | Path) -> Intake:
    """An IMU recording: the centre 2000 samples (10 s at 200 Hz), or all of a shorter one, zero-padded."""
    data = read_imu(path)
    total = data.shape[1]
    start, end = imu_window(total)
    duration = total / IMU_RATE
    fraction = (end - start) / total if total else 0.0
    padded = (IMU_SAMPLES - (end - start)) / IMU_RATE or None
    span = Span(start / IMU_RATE, end / IMU_RATE)
    if fraction >= 1:
        summary = f"ImageBind took in all {total} samples ({length(duration)} at 200 Hz) of this recording" + (
            f", padded with zeros to {IMU_SAMPLES} samples (10 s)." if padded else "."
        )
        short = f"all {length(duration)}"
    else:
        summary = (
            f"ImageBind took in the middle {length(span.end - span.start)} of this {length(duration)} recording "
            f"(samples {start}–{end} of {total}, from {clock(span.start)} to {clock(span.end)}): {_percent(fraction)} of it."
        )
        short = f"{length(span.end - span.start)} of {length(duration)} taken in"
    return Intake(
        Modality.IMU, summary, short, fraction, fraction < LARGE_LOSS, duration=duration, spans=(span,), samples=total, padded=padded, material=data
    )


def took_in(kind: Modality, path: str | Path) -> Intake:
    """What ImageBind takes in from this file as this kind; a file its loader refuses raises the same MediaError."""
    kind = Modality(kind)
    if kind in (Modality.IMAGE, Modality.THERMAL):
        return image_intake(path, kind)
    if kind is Modality.DEPTH:
        return depth_intake(path)
    if kind is Modality.AUDIO:
        return audio_intake(path)
    if kind is Modality.VIDEO:
        return video_intake(path)
    return imu_intake(path)
