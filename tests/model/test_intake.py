"""What ImageBind took in (model/intake.py): every box, frame, clip and window equals what the
loader itself cut, read back from the loader's own output or caught as it cuts — not recomputed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import InterpolationMode

from pandagpt_demo.model import modalities
from pandagpt_demo.model.intake import clock, length, took_in
from pandagpt_demo.model.modalities import AUDIO_RATE, Modality, load_imu, load_video
from tests.media import imu_ramp, write_depth_npy, write_thermal, write_video, write_video_frames, write_video_with_sound, write_wav

SIZES = [(301, 199), (199, 301), (224, 500), (1001, 223), (224, 224), (640, 480)]


def ramp(width: int, height: int, axis: int) -> Image.Image:
    """A float image whose value is each pixel centre's coordinate along `axis` (0: x, 1: y)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    return Image.fromarray(x if axis == 0 else y, "F")


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_the_image_crop_box_is_where_the_reference_transform_cuts(tmp_path: Path, size: tuple[int, int]) -> None:
    """ImageBind's own transform (torchvision Resize(224, bicubic) + CenterCrop(224)) run on images
    whose values are their coordinates: the box's edges and scale are read back from its output."""
    width, height = size
    path = tmp_path / "photo.png"
    Image.new("RGB", size, (90, 120, 150)).save(path)
    box = took_in(Modality.IMAGE, path).crops[0]
    reference = transforms.Compose([transforms.Resize(224, interpolation=InterpolationMode.BICUBIC), transforms.CenterCrop(224)])
    for axis, (start, end) in enumerate([(box.left, box.right), (box.top, box.bottom)]):
        seen = np.asarray(reference(ramp(width, height, axis)))
        line = seen[112, :] if axis == 0 else seen[:, 112]
        scale = (end - start) / 224
        expected = start + (np.arange(224) + 0.5) * scale  # where each output pixel's centre falls
        assert np.abs(line[8:-8] - expected[8:-8]).max() < 0.02 * scale + 1e-3, (axis, size)


def test_an_exif_turn_is_not_applied_and_is_said(tmp_path: Path) -> None:
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90° clockwise
    Image.new("RGB", (400, 300), (10, 200, 30)).save(path, exif=exif)
    intake = took_in(Modality.IMAGE, path)
    assert (intake.width, intake.height) == (400, 300), "the pixels as stored, as the loader reads them"
    assert intake.crops[0].left > 0 and intake.crops[0].top == 0
    assert "EXIF" in intake.summary and "turned 90° clockwise" in intake.summary and intake.large_loss
    plain = tmp_path / "plain.jpg"
    Image.new("RGB", (400, 300)).save(plain)
    assert "EXIF" not in took_in(Modality.IMAGE, plain).summary


def test_thermal_and_depth_take_the_image_crop(tmp_path: Path) -> None:
    write_thermal(tmp_path / "t.png", (320, 240))
    write_depth_npy(tmp_path / "d.npy", (240, 320))
    thermal, depth = took_in(Modality.THERMAL, tmp_path / "t.png"), took_in(Modality.DEPTH, tmp_path / "d.npy")
    assert (thermal.width, thermal.height, depth.width, depth.height) == (320, 240, 240, 320)
    assert thermal.crops[0].top == 0 and thermal.crops[0].left == pytest.approx((298 - 224) // 2 * 320 / 298)
    assert depth.crops[0].left == 0 and depth.crops[0].top == pytest.approx(round((298 - 224) / 2) * 320 / 298)
    assert "thermal image" in thermal.summary and "depth map" in depth.summary


def audio_cuts(monkeypatch: pytest.MonkeyPatch, path: Path) -> list[tuple[int, int]]:
    """The [start, end) samples of each clip the audio loader cuts, caught as it makes each log-mel."""
    cuts: list[tuple[int, int]] = []
    melspec = modalities._melspec

    def spy(clip: torch.Tensor) -> torch.Tensor:
        cuts.append((clip.storage_offset(), clip.storage_offset() + clip.size(1)))
        return melspec(clip)

    monkeypatch.setattr(modalities, "_melspec", spy)
    modalities.load_audio(path)
    return cuts


@pytest.mark.parametrize("seconds", [0.01, 1.5, 5.0, 9.0, 61.0])
def test_the_heard_clips_are_the_loaders_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    path = tmp_path / "sound.wav"
    write_wav(path, seconds, rate=22_050)  # resampled to 16 kHz first, as the loader does
    intake = took_in(Modality.AUDIO, path)
    cuts = audio_cuts(monkeypatch, path)
    assert [(round(s.start * AUDIO_RATE), round(s.end * AUDIO_RATE)) for s in intake.spans] == [
        (start, start + 2 * AUDIO_RATE) for start, _ in cuts
    ], "the clips start where the loader cuts them, and last 2 s (Kaldi pads what the file lacks)"
    assert intake.duration == pytest.approx(seconds, abs=1e-3)
    recorded = modalities.read_waveform(path)[1]
    heard = np.zeros(recorded, dtype=bool)
    for start, _ in cuts:
        heard[start : start + 2 * AUDIO_RATE] = True
    assert intake.fraction == pytest.approx(heard.mean(), abs=1e-4)
    if seconds < 2:
        assert intake.padded == pytest.approx(2 - seconds, abs=1e-3) and intake.summary.startswith("All of this")


def test_a_four_minute_recording_is_heard_for_six_seconds_at_the_samplers_times(tmp_path: Path) -> None:
    path = tmp_path / "long.flac"
    sf.write(path, np.random.default_rng(0).normal(0, 0.1, 240 * AUDIO_RATE).astype(np.float32), AUDIO_RATE)
    intake = took_in(Modality.AUDIO, path)
    assert intake.summary == "6 s of this 4 min recording were heard, from 0:00, 1:19 and 2:39; nothing after 2:41."
    assert intake.short == "6 s of 4 min heard" and intake.large_loss
    assert intake.fraction == pytest.approx(6 / 240)
    assert intake.as_data()["spans"][1] == {"start": pytest.approx(238 / 3), "end": pytest.approx(238 / 3 + 2)}


def test_a_videos_sound_track_is_heard_like_any_sound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "talk.mp4"
    write_video_with_sound(path, seconds=12)
    intake = took_in(Modality.AUDIO, path)
    assert intake.duration == pytest.approx(12, abs=0.05) and intake.kind is Modality.AUDIO
    assert [round(s.start * AUDIO_RATE) for s in intake.spans] == [start for start, _ in audio_cuts(monkeypatch, path)]
    assert "sound is not part of this input" in took_in(Modality.VIDEO, path).note


def red_index(crop: torch.Tensor, count: int) -> list[int]:
    """Frame indices written as red levels 20 + 200 * i / (count - 1) (tests/media.write_video), read back."""
    red = crop[0] * modalities.IMAGE_STD[0] + modalities.IMAGE_MEAN[0]
    return ((red.mean(dim=(1, 2)) * 255 - 20) * (count - 1) / 200).round().long().tolist()


@pytest.mark.parametrize(("seconds", "fps"), [(4, 10), (1, 10), (13, 2)], ids=["4s", "shorter-than-a-clip", "13s"])
def test_the_seen_frames_are_those_the_loader_encodes(tmp_path: Path, seconds: float, fps: int) -> None:
    path = tmp_path / "clip.mp4"
    write_video(path, seconds=seconds, fps=fps)
    intake = took_in(Modality.VIDEO, path)
    result = load_video(path)
    count = int(seconds * fps)
    seen = [index for clip in range(5) for index in red_index(result[clip * 3], count)]
    assert [f.index for f in intake.frames] == seen
    assert [f.time for f in intake.frames] == [i / fps for i in seen]
    assert intake.duration == pytest.approx(seconds) and sorted(intake.material) == sorted(set(seen))
    assert intake.large_loss == (seconds > 10)


@pytest.mark.parametrize("size", [(500, 300), (300, 500)], ids=["landscape", "portrait"])
def test_the_three_crops_boxes_are_where_the_loader_crops(tmp_path: Path, size: tuple[int, int]) -> None:
    width, height = size
    along = width if width > height else height
    values = np.round(np.arange(along) * 255 / (along - 1)).astype(np.uint8)
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    frame[..., 0] = values[None, :] if width > height else values[:, None]
    path = tmp_path / "ramp.mp4"
    write_video_frames(path, [frame] * 10, fps=10)
    intake = took_in(Modality.VIDEO, path)
    result = load_video(path)
    for crop, box in enumerate(intake.crops):
        red = (result[crop, 0] * modalities.IMAGE_STD[0] + modalities.IMAGE_MEAN[0]) * 255
        line = red.mean(dim=(0, 1)) if width > height else red.mean(dim=(0, 2))
        start, end = (box.left, box.right) if width > height else (box.top, box.bottom)
        centres = start + (np.arange(224) + 0.5) * (end - start) / 224 - 0.5
        assert (line[4:-4] - torch.from_numpy(centres[4:-4] * 255 / (along - 1)).float()).abs().max() < 4, crop


@pytest.mark.parametrize("samples", [100, 2000, 2001, 10_000])
def test_the_imu_window_is_the_loaders_own(tmp_path: Path, samples: int) -> None:
    path = tmp_path / "walk.npy"
    np.save(path, imu_ramp(samples))
    intake = took_in(Modality.IMU, path)
    kept = load_imu(path)[0]  # channel 0 holds each sample's index
    span = intake.spans[0]
    first, count = int(kept[0]), min(samples, 2000)
    assert (round(span.start * 200), round(span.end * 200)) == (first, first + count)
    assert torch.equal(kept[:count], torch.arange(first, first + count, dtype=torch.float32))
    assert intake.samples == samples and intake.fraction == pytest.approx(count / samples)
    assert (intake.padded or 0) == pytest.approx((2000 - count) / 200)


def test_a_file_the_loader_refuses_is_refused_alike(tmp_path: Path) -> None:
    path = tmp_path / "broken.wav"
    path.write_bytes(b"not audio at all")
    with pytest.raises(modalities.MediaError, match="broken.wav"):
        took_in(Modality.AUDIO, path)


def test_times_and_lengths_read_as_people_say_them() -> None:
    assert [clock(s) for s in (0, 79.33, 158.67, 160.67, 3600)] == ["0:00", "1:19", "2:39", "2:41", "60:00"]
    assert [clock(s, tenths=True) for s in (0, 0.44, 1.25, 61.96)] == ["0:00.0", "0:00.4", "0:01.2", "1:02.0"]
    assert [length(s) for s in (0.01, 1.5, 6, 42, 240, 250)] == ["0.01 s", "1.5 s", "6 s", "42 s", "4 min", "4:10"]


def test_the_data_is_plain_json(tmp_path: Path) -> None:
    import json

    write_video(tmp_path / "v.mp4", seconds=2, fps=5)
    data = took_in(Modality.VIDEO, tmp_path / "v.mp4").as_data()
    read = json.loads(json.dumps(data))
    assert "material" not in read and read["kind"] == "video" and read["width"] == 320
    assert read["frames"][:2] == [{"index": 0, "time": 0.0}, {"index": 9, "time": 1.8}]
    assert len(read["frames"]) == 10 and len(read["crops"]) == 3 and set(read["crops"][0]) == {"left", "top", "right", "bottom"}
