"""Writers of small synthetic media files for tests; every function returns what it wrote."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import soundfile as sf
from PIL import Image

from pandagpt_demo.model.modalities import Modality
from tests.conftest import REPO_ROOT

# One example file of each kind (examples/make_examples.py made them).
EXAMPLE_MEDIA = {
    Modality.IMAGE: REPO_ROOT / "examples" / "sunset.jpg",
    Modality.AUDIO: REPO_ROOT / "examples" / "dog_bark.wav",
    Modality.VIDEO: REPO_ROOT / "examples" / "bouncing_ball.mp4",
    Modality.THERMAL: REPO_ROOT / "examples" / "thermal_person.png",
    Modality.DEPTH: REPO_ROOT / "examples" / "depth_room.png",
    Modality.IMU: REPO_ROOT / "examples" / "imu_walking.csv",
}


def write_image(path: str | Path, size: tuple[int, int] = (320, 240), seed: int = 0) -> np.ndarray:
    """An RGB image (width, height) of smooth gradients plus noise, so crops and resizes are visible."""
    width, height = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 / max(width - 1, 1), y * 255 / max(height - 1, 1), (x + y) % 256], axis=-1)
    pixels = np.clip(pixels + rng.normal(0, 20, pixels.shape), 0, 255).astype(np.uint8)
    Image.fromarray(pixels, "RGB").save(path)
    return pixels


def write_solid_image(path: str | Path, color: tuple[int, int, int], size: tuple[int, int] = (300, 200)) -> None:
    """An image of one colour everywhere."""
    Image.new("RGB", size, color).save(path)


def write_thermal(path: str | Path, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """A grayscale (mode L) image with a warm blob in the middle, like a thermal camera frame."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    blob = np.exp(-(((x - width / 2) / (width / 4)) ** 2 + ((y - height / 2) / (height / 4)) ** 2))
    pixels = (40 + 200 * blob).astype(np.uint8)
    Image.fromarray(pixels, "L").save(path)
    return pixels


def write_depth_png16(path: str | Path, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """A 16-bit disparity PNG whose left edge is nearest (brightest) and right edge farthest."""
    width, height = size
    row = np.linspace(65535, 1000, width)
    pixels = np.tile(row, (height, 1)).astype(np.uint16)
    Image.fromarray(pixels).save(path)
    return pixels


def write_depth_npy(path: str | Path, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """Metric depth in metres: 0.5 m at the left edge to 10 m at the right, with one invalid (0) pixel."""
    width, height = size
    depth = np.tile(np.linspace(0.5, 10.0, width), (height, 1)).astype(np.float32)
    depth[0, 0] = 0.0
    np.save(path, depth)
    return depth


def write_samples(path: str | Path, samples: np.ndarray, rate: int) -> np.ndarray:
    """Samples shaped (n,) or (n, channels) in [-1, 1] to a 16-bit PCM wav."""
    sf.write(str(path), samples, rate, subtype="PCM_16")
    return samples


def write_wav(
    path: str | Path,
    seconds: float,
    rate: int = 16_000,
    channels: int = 1,
    freq: float = 440.0,
    amplitude: float = 0.5,
) -> np.ndarray:
    """A sine wave (each channel a little higher in pitch); seconds=0 writes a valid wav with no samples."""
    t = np.arange(int(round(seconds * rate))) / rate
    samples = np.stack([amplitude * np.sin(2 * np.pi * freq * (1 + c / 4) * t) for c in range(channels)], axis=1)
    return write_samples(path, samples, rate)


def write_stepped_wav(path: str | Path, levels: list[float], rate: int = 16_000, freq: float = 1000.0) -> np.ndarray:
    """A mono sine whose amplitude changes every second to the next of `levels`."""
    t = np.arange(rate) / rate
    samples = np.concatenate([level * np.sin(2 * np.pi * freq * t) for level in levels])
    return write_samples(path, samples, rate)


def write_video_frames(path: str | Path, frames: list[np.ndarray], fps: int, codec: str = "mpeg4") -> None:
    """RGB uint8 frames (H, W, 3) to a video file; high bit rate so values survive compression."""
    height, width = frames[0].shape[:2] if frames else (240, 320)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = 20_000_000
        for pixels in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())


def write_video(path: str | Path, seconds: float, fps: int = 10, size: tuple[int, int] = (320, 240), codec: str = "mpeg4") -> list[np.ndarray]:
    """A video whose frame i is a gradient with brightness rising with i, so frames are distinguishable."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    frames = []
    for index in range(int(round(seconds * fps))):
        level = 20 + 200 * index / max(seconds * fps - 1, 1)
        pixels = np.stack([np.full_like(x, level), x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1)], -1)
        frames.append(pixels.astype(np.uint8))
    write_video_frames(path, frames, fps, codec)
    return frames


def write_imu_csv(path: str | Path, data: np.ndarray, header: bool = True, time_column: bool = True, rate: int = 200) -> None:
    """(N, 6) IMU samples to CSV, optionally with a header row and a leading `time` column."""
    names = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
    if time_column:
        data = np.concatenate([np.arange(len(data))[:, None] / rate, data], axis=1)
        names = ["time", *names]
    lines = [",".join(names)] if header else []
    lines += [",".join(repr(float(v)) for v in row) for row in data]
    Path(path).write_text("\n".join(lines) + "\n")


def imu_ramp(n_samples: int) -> np.ndarray:
    """(N, 6) IMU samples where sample i of channel c is i + c * 0.1, so positions can be checked."""
    return np.arange(n_samples)[:, None] + np.arange(6)[None, :] * 0.1


def write_compressed_audio(path: str | Path, seconds: float, rate: int = 48_000, codec: str = "libopus", freq: float = 440.0) -> np.ndarray:
    """A mono sine encoded with FFmpeg (e.g. Opus in .webm, as browser microphones record)."""
    t = np.arange(int(round(seconds * rate))) / rate
    samples = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        for start in range(0, len(samples), 960):
            frame = av.AudioFrame.from_ndarray(samples[None, start : start + 960], format="fltp", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return samples


def distinct_image(path: Path, seed: int, size: int = 96) -> Path:
    """A PNG of noise (incompressible: its size on disk is about size*size*3 bytes), different per seed."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def write_video_with_sound(path: str | Path, seconds: float, fps: int = 10, size: tuple[int, int] = (160, 120)) -> None:
    """A video with an AAC sound track (a tone), by FFmpeg's own muxer through PyAV."""
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        sound = container.add_stream("aac", rate=16_000, layout="mono")
        for index in range(int(seconds * fps)):
            pixels = np.full((size[1], size[0], 3), index % 256, dtype=np.uint8)
            container.mux(video.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(video.encode())
        t = np.arange(int(seconds * 16_000)) / 16_000
        samples = (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
        for start in range(0, len(samples), 1024):
            frame = av.AudioFrame.from_ndarray(samples[None, start : start + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16_000, start
            container.mux(sound.encode(frame))
        container.mux(sound.encode())
