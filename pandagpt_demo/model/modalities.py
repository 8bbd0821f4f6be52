"""Load a user's file of any supported kind into the exact tensor ImageBind's encoder expects.

The released PandaGPT weights only ever saw ImageBind's own preprocessing, so image, thermal, audio
and video follow docs/model.md step by step (same transforms, same clip sampler, same
constants); comments mark the few places where we deliberately differ, each only where the reference
would crash.

Depth and IMU were not exposed by the original demo; their conventions are ours:

* Depth: a one-channel *disparity* image, brighter = nearer. An 8- or 16-bit grayscale PNG/TIFF is
  scaled to [0, 1] by its type's maximum (255 or 65535; PIL's 32-bit integer mode "I", which older
  Pillow versions report for 16-bit PNGs, is scaled by 65535 too). A `.npy` file holds a 2-D float
  array of metric depth in metres; it becomes disparity 1/depth where depth > 0 (0 where depth is 0
  or negative: no measurement) and is divided by its maximum. NaN or infinite depths are refused,
  as are non-finite samples in audio and IMU files: they would make the embedding NaN. The [0, 1] map then takes the thermal path
  as a float ("F") PIL image: Resize(224, bicubic), CenterCrop(224), ToTensor, no normalization;
  bicubic overshoot is clipped back to [0, 1]. Output (1, 224, 224).
* IMU: six channels in the order acc_x, acc_y, acc_z, gyro_x, gyro_y, gyro_z, in the recording's
  own units, sampled at 200 Hz (ImageBind's Ego4D windows are 10 s = 2000 samples); no scaling or
  resampling is applied. A `.csv` is comma separated with an optional header row and six numeric
  columns, plus an optional first column named `t`, `time` or `timestamp` (header required) that is
  dropped. A `.npy` holds an (N, 6) or (6, N) numeric array ((6, 6) is read as channels first).
  Longer recordings keep the centre 2000 samples, shorter ones are zero-padded at the end.
  Output (6, 2000) float32.

Every loader opens its own file or container and keeps no state between calls, so loaders are safe
to call from many threads at once. Any problem with a user's file is raised as `MediaError`.
"""

from __future__ import annotations

import csv
import enum
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
import torchaudio
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode

from pandagpt_demo.errors import BadInput

IMAGE_SIZE = 224
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)
MAX_PIXELS = 50_000_000

AUDIO_RATE = 16_000
AUDIO_CLIP_SECONDS = 2
AUDIO_CLIPS = 3
AUDIO_MEL_BINS = 128
AUDIO_FRAMES = 204
AUDIO_MEAN = -4.268
AUDIO_STD = 9.138
KALDI_FRAME_SAMPLES = 400  # one 25 ms frame at 16 kHz

VIDEO_CLIP_SECONDS = 2
VIDEO_CLIPS = 5
VIDEO_FRAMES_PER_CLIP = 2
VIDEO_CROPS = 3

IMU_CHANNELS = 6
IMU_SAMPLES = 2000
IMU_TIME_COLUMNS = ("t", "time", "timestamp")


class Modality(str, enum.Enum):
    """An input kind the demo accepts; the value is the name shown to users."""

    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"
    THERMAL = "thermal"
    DEPTH = "depth"
    IMU = "imu"

    @property
    def encoder_key(self) -> str:
        """ImageBind's modality key: videos go through the vision tower like images."""
        return "vision" if self in (Modality.IMAGE, Modality.VIDEO) else self.value

    @property
    def extensions(self) -> tuple[str, ...]:
        """File suffixes we accept, for the UI's file pickers and error messages."""
        return _EXTENSIONS[self]


_EXTENSIONS: dict[Modality, tuple[str, ...]] = {
    Modality.IMAGE: (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"),
    Modality.AUDIO: (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".opus", ".webm"),
    Modality.VIDEO: (".mp4", ".mov", ".avi", ".mkv", ".webm"),
    Modality.THERMAL: (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"),
    Modality.DEPTH: (".png", ".tif", ".tiff", ".npy"),
    Modality.IMU: (".csv", ".npy"),
}


class MediaError(BadInput):
    """A user file that cannot be used; the message names the file (basename) and modality and says what is wrong."""

    def __init__(self, modality: Modality, path: str | Path, reason: str):
        self.modality = Modality(modality)
        self.path = Path(path)
        self.reason = reason.rstrip(".")
        super().__init__(f"Could not use the {self.modality.value} file '{self.path.name}': {self.reason}.")

    def __reduce__(self) -> tuple:
        """Pickled whole, so it can come back from another process (a ZeroGPU call) as itself."""
        return type(self), (self.modality, self.path, self.reason)


def _not_readable(modality: Modality, what: str) -> str:
    """Reason for a file the decoder rejects, listing what we accept."""
    return f"it is not a readable {what} (accepted: {', '.join(modality.extensions)})"


def checked_file(modality: Modality, path: str | Path) -> Path:
    """Fail early, with a clear message, on paths that no decoder could use."""
    path = Path(path)
    if not path.exists():
        raise MediaError(modality, path, "file not found")
    if path.is_dir():
        raise MediaError(modality, path, "it is a folder, not a file")
    if not path.is_file():  # a device, a pipe: reading it might never end
        raise MediaError(modality, path, "it is not a regular file")
    if path.stat().st_size == 0:
        raise MediaError(modality, path, "it is empty (0 bytes)")
    return path


def _check_pixels(modality: Modality, path: Path, size: tuple[int, int], max_pixels: int) -> None:
    """Refuse images whose decoding or short-side resize would need unreasonable memory."""
    width, height = size
    if width < 1 or height < 1:
        raise MediaError(modality, path, f"it has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise MediaError(modality, path, f"it is too large ({width}x{height} pixels; the limit is {max_pixels:,} pixels)")
    short, long = min(width, height), max(width, height)
    if IMAGE_SIZE * int(IMAGE_SIZE * long / short) > max_pixels:
        raise MediaError(modality, path, f"its shape {width}x{height} is too elongated to resize")


def open_image(modality: Modality, path: str | Path, mode: str | None, max_pixels: int) -> Image.Image:
    """Decode an image fully (converted to `mode` unless None) after checking its size."""
    path = checked_file(modality, path)
    try:
        with Image.open(path) as img:
            _check_pixels(modality, path, img.size, max_pixels)
            img.load()
            return img if mode is None else img.convert(mode)
    except MediaError:
        raise
    except Image.DecompressionBombError as exc:
        raise MediaError(modality, path, f"it is too large to decode safely ({exc})") from exc
    except (OSError, SyntaxError, ValueError) as exc:  # PIL's decoders raise all three on bad data
        raise MediaError(modality, path, _not_readable(modality, "image")) from exc


def resized_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) after torchvision's Resize(224): the short side 224, the long one truncated."""
    if width <= height:
        return IMAGE_SIZE, int(IMAGE_SIZE * height / width)
    return int(IMAGE_SIZE * width / height), IMAGE_SIZE


def centre_crop_offset(width: int, height: int) -> tuple[int, int]:
    """(left, top) of torchvision's CenterCrop(224) in an image of this size (its rounding)."""
    return int(round((width - IMAGE_SIZE) / 2.0)), int(round((height - IMAGE_SIZE) / 2.0))


def _resize_crop(img: Image.Image) -> Image.Image:
    """ImageBind's spatial transform: short side to 224 (bicubic, PIL backend), then centre crop."""
    width, height = resized_size(*img.size)
    img = TF.resize(img, [height, width], interpolation=InterpolationMode.BICUBIC)
    left, top = centre_crop_offset(width, height)
    return TF.crop(img, top, left, IMAGE_SIZE, IMAGE_SIZE)


def load_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> torch.Tensor:
    """RGB image -> (3, 224, 224) float32, normalized with CLIP's mean/std as ImageBind does."""
    img = open_image(Modality.IMAGE, path, "RGB", max_pixels)
    return TF.normalize(TF.to_tensor(_resize_crop(img)), mean=IMAGE_MEAN, std=IMAGE_STD)


def load_thermal(path: str | Path, max_pixels: int = MAX_PIXELS) -> torch.Tensor:
    """Thermal image -> (1, 224, 224) float32 in [0, 1]; ImageBind does not normalize thermal."""
    img = open_image(Modality.THERMAL, path, "L", max_pixels)
    return TF.to_tensor(_resize_crop(img))


_DEPTH_SCALES = {"L": 255.0, "I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I": 65535.0}


def _depth_from_npy(path: Path, max_pixels: int) -> np.ndarray:
    """Metric depth in metres -> disparity scaled to [0, 1] (see the module docstring)."""
    depth = _load_npy(Modality.DEPTH, path)
    if depth.ndim == 3 and 1 in (depth.shape[0], depth.shape[-1]):
        depth = depth.reshape(depth.shape[1:] if depth.shape[0] == 1 else depth.shape[:-1])
    if depth.ndim != 2:
        raise MediaError(Modality.DEPTH, path, f"expected a 2-D depth array, found shape {depth.shape}")
    if not (np.issubdtype(depth.dtype, np.floating) or np.issubdtype(depth.dtype, np.integer)):
        raise MediaError(Modality.DEPTH, path, f"expected numeric depth values, found dtype {depth.dtype}")
    _check_pixels(Modality.DEPTH, path, (depth.shape[1], depth.shape[0]), max_pixels)
    depth = depth.astype(np.float64)
    _refuse_non_finite(Modality.DEPTH, path, depth, "depth values", ("row", "column"), "use 0 for pixels without a measurement")
    valid = depth > 0
    disparity = np.zeros(depth.shape, dtype=np.float64)
    disparity[valid] = 1.0 / depth[valid]
    peak = disparity.max()
    if peak <= 0:
        raise MediaError(Modality.DEPTH, path, "it contains no positive depth values")
    return (disparity / peak).astype(np.float32)


def _refuse_non_finite(modality: Modality, path: Path, values: np.ndarray, what: str, axes: tuple[str, str], hint: str = "") -> None:
    """A MediaError saying how many `values` are NaN or infinite and where the first is (`axes` name its
    two indices), if any are: one such value makes the whole embedding NaN."""
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    kind = "NaN" if np.isnan(values[first]) else "infinite"
    place = ", ".join(f"{axis} {index}" for axis, index in zip(axes, first))
    advice = f"; {hint}" if hint else ""
    raise MediaError(modality, path, f"{int(bad.sum())} of its {what} are not finite numbers (the first, at {place}, is {kind}){advice}")


def _depth_from_image(path: Path, max_pixels: int) -> np.ndarray:
    """Grayscale disparity image -> float array in [0, 1], scaled by its type's maximum."""
    img = open_image(Modality.DEPTH, path, None, max_pixels)
    scale = _DEPTH_SCALES.get(img.mode)
    if scale is None:
        raise MediaError(Modality.DEPTH, path, f"expected a single-channel 8- or 16-bit depth image, found PIL mode {img.mode}")
    return np.clip(np.asarray(img, dtype=np.float32) / scale, 0.0, 1.0)


def read_disparity(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A depth file as disparity in [0, 1] at its own size: what `load_depth` resizes, and what a preview shows."""
    path = checked_file(Modality.DEPTH, path)
    return _depth_from_npy(path, max_pixels) if path.suffix.lower() == ".npy" else _depth_from_image(path, max_pixels)


def load_depth(path: str | Path, max_pixels: int = MAX_PIXELS) -> torch.Tensor:
    """Depth/disparity map -> (1, 224, 224) float32 in [0, 1], nearer = larger, via the thermal transform."""
    disparity = read_disparity(path, max_pixels)
    # Mode "F" keeps full precision through PIL's bicubic resize (16-bit modes cannot be resized bicubically).
    img = _resize_crop(Image.fromarray(disparity))  # float32 -> mode "F"
    return TF.to_tensor(img).clamp_(0.0, 1.0)


def clip_timepoints(duration: float, clip_duration: int, clips_per_video: int) -> list[tuple[Fraction, Fraction]]:
    """pytorchvideo's ConstantClipsPerVideoSampler as ImageBind drives it: evenly spaced (start, end) seconds.

    Exact fractions, as in pytorchvideo, so sample and frame boundaries round the same way.
    """
    step = Fraction(Fraction(max(duration - clip_duration, 0)), clips_per_video)
    return [(step * i, step * i + clip_duration) for i in range(clips_per_video)]


def audio_clip_bounds(n_samples: int) -> list[tuple[int, int]]:
    """Sample [start, end) of each of the 3 two-second audio clips for a 16 kHz waveform."""
    clips = clip_timepoints(n_samples / AUDIO_RATE, AUDIO_CLIP_SECONDS, AUDIO_CLIPS)
    return [(int(start * AUDIO_RATE), int(end * AUDIO_RATE)) for start, end in clips]


def _read_audio_pyav(path: Path) -> tuple[np.ndarray, int]:
    """Decode compressed audio libsndfile cannot read (mp3/m4a/webm from browsers) to (channels, samples)."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise MediaError(Modality.AUDIO, path, "it has no audio track")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp")  # keep layout and rate; planar float32
        chunks: list[np.ndarray] = []
        rate = stream.rate
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray())
                rate = out.sample_rate
        chunks.extend(out.to_ndarray() for out in resampler.resample(None))
    if not chunks:
        return np.zeros((1, 0), dtype=np.float32), rate
    return np.concatenate(chunks, axis=1).astype(np.float32, copy=False), rate


def _read_audio(path: Path) -> tuple[torch.Tensor, int]:
    """(channels, samples) float32 in [-1, 1] and the sample rate, like `torchaudio.load`."""
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
        return torch.from_numpy(np.ascontiguousarray(data.T)), int(rate)  # float WAVs may hold NaN: load_audio checks
    except (sf.SoundFileError, RuntimeError, TypeError, ValueError):
        pass  # not a libsndfile format; try FFmpeg below
    try:
        data, rate = _read_audio_pyav(path)
    except MediaError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(Modality.AUDIO, path, _not_readable(Modality.AUDIO, "audio file")) from exc
    return torch.from_numpy(data), int(rate)


def _melspec(clip: torch.Tensor) -> torch.Tensor:
    """ImageBind's waveform2melspec + Normalize for one clip -> (1, 128, 204).

    The mean is subtracted in place, as ImageBind does: the clip is a view of the whole waveform, so a
    later overlapping clip sees the earlier clip's shift. We reproduce that on purpose.
    """
    clip -= clip.mean()
    fbank = torchaudio.compliance.kaldi.fbank(
        clip,
        htk_compat=True,
        sample_frequency=AUDIO_RATE,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=AUDIO_MEL_BINS,
        dither=0.0,
        frame_length=25,
        frame_shift=10,
    ).transpose(0, 1)
    pad = AUDIO_FRAMES - fbank.size(1)
    fbank = F.pad(fbank, (0, pad)) if pad > 0 else fbank[:, :AUDIO_FRAMES]
    return TF.normalize(fbank.unsqueeze(0), mean=[AUDIO_MEAN], std=[AUDIO_STD])


def read_waveform(path: str | Path) -> tuple[torch.Tensor, int]:
    """An audio file (or a video's sound track) as the (channels, samples) 16 kHz waveform ImageBind's
    clips are cut from (`audio_clip_bounds` of its length are the clips): resampled, and padded to
    one Kaldi frame if shorter; and its number of samples before that padding."""
    path = checked_file(Modality.AUDIO, path)
    waveform, rate = _read_audio(path)
    if waveform.size(1) == 0:
        raise MediaError(Modality.AUDIO, path, "it is empty (0 samples)")
    _refuse_non_finite(Modality.AUDIO, path, waveform.numpy(), "samples", ("channel", "sample"))
    if rate != AUDIO_RATE:
        waveform = torchaudio.functional.resample(waveform, orig_freq=rate, new_freq=AUDIO_RATE)
    recorded = waveform.size(1)
    if recorded < KALDI_FRAME_SAMPLES:
        # Differs from the reference only where it would crash: Kaldi needs one full 25 ms frame,
        # so clips shorter than that are padded with silence to 400 samples.
        waveform = F.pad(waveform, (0, KALDI_FRAME_SAMPLES - waveform.size(1)))
    return waveform, recorded


def load_audio(path: str | Path) -> torch.Tensor:
    """Audio file -> (3, 1, 128, 204) float32: three 2 s log-mel clips, as ImageBind's audio loader."""
    waveform, _ = read_waveform(path)
    clips = [_melspec(waveform[:, start:end]) for start, end in audio_clip_bounds(waveform.size(1))]
    return torch.stack(clips)


def has_sound_track(path: str | Path) -> bool:
    """Whether a video file also holds an audio stream (which `load_audio` then reads)."""
    try:
        with av.open(str(path)) as container:
            return bool(container.streams.audio)
    except (av.FFmpegError, OSError, ValueError):
        return False


def sample_video_frames(n_frames: int, fps: float) -> list[list[int]]:
    """Frame indices (2 per clip, 5 clips) ImageBind's video loader uses for a video of n_frames at fps.

    Clip frames are `range(ceil(fps * start), min(ceil(fps * end), n_frames))` as in pytorchvideo's
    decord backend, then `torch.linspace(0, t - 1, 2).long()` picks the first and last.
    """
    indices: list[list[int]] = []
    for start, end in clip_timepoints(n_frames / fps, VIDEO_CLIP_SECONDS, VIDEO_CLIPS):
        # float * Fraction is a float product in Python, exactly as in pytorchvideo.
        first = math.ceil(fps * float(start))
        frames = range(first, min(math.ceil(fps * float(end)), n_frames))
        if not frames:
            # Only below 0.5 fps can a clip hold no frame (between two frames, or past the last one).
            # The reference would crash; we use the frame on screen when the clip starts, i.e. the
            # last frame available by then (first >= 1 here, as a clip starting at 0 s is never empty).
            shown = min(first, n_frames) - 1
            frames = range(shown, shown + 1)
        picks = torch.linspace(0, len(frames) - 1, VIDEO_FRAMES_PER_CLIP).long()
        indices.append([frames[int(i)] for i in picks])
    return indices


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    """The first video stream, or a MediaError for audio-only or image-less containers."""
    if not container.streams.video:
        raise MediaError(Modality.VIDEO, path, "it has no video track")
    return container.streams.video[0]


def _decode_video(path: Path, wanted: set[int]) -> tuple[dict[int, np.ndarray], int]:
    """One decode pass: RGB uint8 arrays of the wanted frame indices, and the number of frames decoded."""
    kept: dict[int, np.ndarray] = {}
    count = 0
    with av.open(str(path)) as container:
        for frame in container.decode(_video_stream(container, path)):
            if count in wanted:
                kept[count] = frame.to_ndarray(format="rgb24")
            count += 1
    return kept, count


def _probe_video(path: Path) -> tuple[float, int]:
    """Average frame rate (as decord reports it) and the container's frame count (0 when unknown)."""
    with av.open(str(path)) as container:
        stream = _video_stream(container, path)
        rate = stream.average_rate or stream.guessed_rate
        if not rate or rate <= 0:
            raise MediaError(Modality.VIDEO, path, "its frame rate is unknown")
        return float(rate), max(int(stream.frames), 0)


def scaled_frame_size(height: int, width: int) -> tuple[int, int]:
    """(height, width) of a frame after pytorchvideo's ShortSideScale(224): the long side floored."""
    if width < height:
        return int(math.floor(float(height) / width * IMAGE_SIZE)), IMAGE_SIZE
    return IMAGE_SIZE, int(math.floor(float(width) / height * IMAGE_SIZE))


def spatial_crop_offsets(height: int, width: int) -> list[tuple[int, int]]:
    """(top, left) of pytorchvideo's SpatialCrop(224, num_crops=3) in a scaled frame:
    left/centre/right, or top/centre/bottom if portrait."""
    offsets = []
    for index in range(VIDEO_CROPS):
        y = int(math.ceil((height - IMAGE_SIZE) / 2))
        x = int(math.ceil((width - IMAGE_SIZE) / 2))
        if height > width:
            y = {0: 0, 2: height - IMAGE_SIZE}.get(index, y)
        else:
            x = {0: 0, 2: width - IMAGE_SIZE}.get(index, x)
        offsets.append((y, x))
    return offsets


def _short_side_scale(clip: torch.Tensor) -> torch.Tensor:
    """pytorchvideo's ShortSideScale(224) on (C, T, H, W): bilinear."""
    size = scaled_frame_size(clip.shape[2], clip.shape[3])
    return F.interpolate(clip, size=size, mode="bilinear", align_corners=False)


def _spatial_crops(clip: torch.Tensor) -> list[torch.Tensor]:
    """The three 224 x 224 crops of a scaled (C, T, H, W) clip."""
    return [clip[:, :, y : y + IMAGE_SIZE, x : x + IMAGE_SIZE] for y, x in spatial_crop_offsets(clip.shape[2], clip.shape[3])]


@dataclass(frozen=True)
class SampledVideo:
    """The frames ImageBind's video loader keeps: their indices per clip, the RGB arrays, the rate
    and the number of frames that decode."""

    fps: float
    n_frames: int
    indices: list[list[int]]
    frames: dict[int, np.ndarray]


def decode_sampled_frames(path: str | Path) -> SampledVideo:
    """The video's sampled frames, decoded. Only those 10 frames are ever held in memory: the frame
    count comes from the container (or a first decode pass when it does not say), then one decode
    pass keeps just the needed frames."""
    path = checked_file(Modality.VIDEO, path)
    try:
        fps, n_frames = _probe_video(path)
        if n_frames == 0:
            _, n_frames = _decode_video(path, set())
        if n_frames == 0:
            raise MediaError(Modality.VIDEO, path, "it contains no decodable frames")
        indices = sample_video_frames(n_frames, fps)
        frames, decoded = _decode_video(path, {i for clip in indices for i in clip})
        if decoded < n_frames:
            # The container over-counted its frames; sample again over the frames that really decode.
            if decoded == 0:
                raise MediaError(Modality.VIDEO, path, "it contains no decodable frames")
            n_frames = decoded
            indices = sample_video_frames(decoded, fps)
            frames, _ = _decode_video(path, {i for clip in indices for i in clip})
    except (av.FFmpegError, OSError) as exc:
        raise MediaError(Modality.VIDEO, path, _not_readable(Modality.VIDEO, "video file")) from exc
    return SampledVideo(fps, n_frames, indices, frames)


def load_video(path: str | Path) -> torch.Tensor:
    """Video file -> (15, 3, 2, 224, 224) float32: 5 clips x 3 crops of 2 frames, as ImageBind's video loader."""
    video = decode_sampled_frames(path)
    mean = torch.tensor(IMAGE_MEAN).view(3, 1, 1, 1)
    std = torch.tensor(IMAGE_STD).view(3, 1, 1, 1)
    crops: list[torch.Tensor] = []
    for clip_indices in video.indices:
        clip = torch.from_numpy(np.stack([video.frames[i] for i in clip_indices])).permute(3, 0, 1, 2)
        clip = _short_side_scale(clip.to(torch.float32) / 255.0)
        crops.extend(_spatial_crops((clip - mean) / std))
    return torch.stack(crops)


def _load_npy(modality: Modality, path: Path) -> np.ndarray:
    """A plain numeric .npy array; pickled objects are refused (they could run code)."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise MediaError(modality, path, "it is not a readable .npy array") from exc


def _is_number(cell: str) -> bool:
    """Whether a CSV cell parses as a float (used to tell a header row from data)."""
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _imu_from_csv(path: Path) -> np.ndarray:
    """Parse the IMU CSV convention (module docstring) to a (6, N) float array."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = [(number, row) for number, row in enumerate(csv.reader(handle), 1) if any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MediaError(Modality.IMU, path, "it is not a readable CSV text file") from exc
    if not rows:
        raise MediaError(Modality.IMU, path, "it is empty (no rows)")

    first = rows[0][1]
    has_header = not all(_is_number(cell) for cell in first)
    n_columns = len(first)
    skip = int(has_header and n_columns == IMU_CHANNELS + 1 and first[0].strip().lower() in IMU_TIME_COLUMNS)
    if n_columns - skip != IMU_CHANNELS:
        raise MediaError(Modality.IMU, path, f"expected 6 columns (acc xyz, gyro xyz), found {n_columns}")
    rows = rows[1:] if has_header else rows
    if not rows:
        raise MediaError(Modality.IMU, path, "it is empty (no data rows)")

    values = np.empty((len(rows), IMU_CHANNELS), dtype=np.float32)
    for index, (number, row) in enumerate(rows):
        if len(row) != n_columns:
            raise MediaError(Modality.IMU, path, f"row {number} has {len(row)} columns, expected {n_columns}")
        for column in range(skip, n_columns):
            cell = row[column]
            if not _is_number(cell):
                raise MediaError(Modality.IMU, path, f"row {number}, column {column + 1} is not a number: {cell!r}")
            value = float(cell)
            if not math.isfinite(value):
                raise MediaError(Modality.IMU, path, f"row {number}, column {column + 1} is not a finite number: {cell!r}")
            values[index, column - skip] = value
    return values.T


def _imu_from_npy(path: Path) -> np.ndarray:
    """An (N, 6) or (6, N) numeric array as (6, N) float; (6, 6) counts as channels first."""
    data = _load_npy(Modality.IMU, path)
    if data.ndim != 2 or IMU_CHANNELS not in data.shape:
        raise MediaError(Modality.IMU, path, f"expected an array of shape (N, 6) or (6, N), found {data.shape}")
    if not (np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.integer)):
        raise MediaError(Modality.IMU, path, f"expected numeric values, found dtype {data.dtype}")
    with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes inf here, and is refused next
        data = (data if data.shape[0] == IMU_CHANNELS else data.T).astype(np.float32)
    _refuse_non_finite(Modality.IMU, path, data, "samples", ("channel", "sample"))
    return data


def read_imu(path: str | Path) -> np.ndarray:
    """An IMU file as its (6, N) samples, before windowing: what `load_imu` cuts, and what a preview plots."""
    path = checked_file(Modality.IMU, path)
    return _imu_from_npy(path) if path.suffix.lower() == ".npy" else _imu_from_csv(path)


def imu_window(n_samples: int) -> tuple[int, int]:
    """[start, end) of the samples `load_imu` keeps: the centre 2000 (all of a shorter recording)."""
    start = max(n_samples - IMU_SAMPLES, 0) // 2
    return start, min(start + IMU_SAMPLES, n_samples)


def load_imu(path: str | Path) -> torch.Tensor:
    """IMU recording -> (6, 2000) float32: the centre 2000 samples, or zero-padded at the end if shorter."""
    data = read_imu(path)
    n_samples = data.shape[1]
    if n_samples == 0:
        raise MediaError(Modality.IMU, path, "it is empty (0 samples)")
    window = torch.zeros(IMU_CHANNELS, IMU_SAMPLES, dtype=torch.float32)
    start, end = imu_window(n_samples)
    window[:, : end - start] = torch.from_numpy(np.ascontiguousarray(data[:, start:end]))
    return window


_LOADERS = {
    Modality.IMAGE: load_image,
    Modality.AUDIO: load_audio,
    Modality.VIDEO: load_video,
    Modality.THERMAL: load_thermal,
    Modality.DEPTH: load_depth,
    Modality.IMU: load_imu,
}


def load_modality(modality: Modality, path: str | Path) -> torch.Tensor:
    """Load any supported input; every problem with the file comes back as a MediaError."""
    modality = Modality(modality)
    try:
        return _LOADERS[modality](path)
    except MediaError:
        raise
    except Exception as exc:  # a decoder failure we did not foresee is still the file's fault
        reason = f"it could not be decoded ({type(exc).__name__}: {exc})"
        raise MediaError(modality, path, reason) from exc
