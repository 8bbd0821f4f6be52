"""The committed gallery examples: manifest well-formed, every file present, small, and decodable as its kind."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import av
import pytest
import soundfile as sf
from PIL import Image

from tests.conftest import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples"
MODALITIES = ("image", "audio", "video", "thermal", "depth", "imu")


def _manifest() -> list[dict]:
    return json.loads((EXAMPLES / "examples.json").read_text(encoding="utf-8"))


def _files(modality: str) -> list[str]:
    """Distinct paths used for one modality across the manifest, in order of first use."""
    return list(dict.fromkeys(row[modality] for row in _manifest() if row.get(modality)))


def test_manifest_rows_are_well_formed():
    rows = _manifest()
    assert isinstance(rows, list) and len(rows) >= 8
    for row in rows:
        assert set(row) == {"question", *MODALITIES}, row
        assert isinstance(row["question"], str) and row["question"].strip(), row
        used = [row[m] for m in MODALITIES if row[m] is not None]
        assert used, f"row without any file: {row}"
        for rel in used:
            assert isinstance(rel, str) and not Path(rel).is_absolute() and "\\" not in rel, rel
            assert rel.startswith("examples/"), rel
            assert (REPO_ROOT / rel).is_file(), f"missing example file {rel}"
    # Every modality of the demo appears in at least one row.
    assert all(_files(m) for m in MODALITIES)


def test_every_example_file_is_listed_and_small():
    listed = {REPO_ROOT / row[m] for row in _manifest() for m in MODALITIES if row[m]}
    media = {p for p in EXAMPLES.iterdir() if p.is_file() and p.suffix not in (".py", ".md", ".json")}
    assert media == listed, f"unlisted: {sorted(p.name for p in media - listed)}"
    sizes = {p.name: p.stat().st_size for p in media}
    assert all(0 < size < 300_000 for size in sizes.values()), sizes
    assert sum(sizes.values()) < 1_500_000, sizes


@pytest.mark.parametrize("rel", _files("image"))
def test_images_open_as_rgb(rel):
    with Image.open(REPO_ROOT / rel) as img:
        img.load()
        assert img.mode == "RGB"
        assert img.format == ("JPEG" if rel.endswith(".jpg") else "PNG")
        assert min(img.size) >= 224 and max(img.size) <= 1024


def test_sunset_and_apple_sizes():
    with Image.open(EXAMPLES / "sunset.jpg") as img:
        assert img.size == (640, 426)
    with Image.open(EXAMPLES / "red_apple.png") as img:
        assert img.size == (480, 480)


@pytest.mark.parametrize("rel", _files("thermal"))
def test_thermal_is_8bit_grayscale(rel):
    with Image.open(REPO_ROOT / rel) as img:
        img.load()
        assert (img.format, img.mode, img.size) == ("PNG", "L", (320, 240))
        low, high = img.getextrema()
        assert high - low > 100  # a warm figure on a cool background


@pytest.mark.parametrize("rel", _files("depth"))
def test_depth_is_16bit_grayscale_png(rel):
    path = REPO_ROOT / rel
    header = path.read_bytes()[:33]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and header[12:16] == b"IHDR"
    assert (header[24], header[25]) == (16, 0), "expected bit depth 16, colour type 0 (grayscale)"
    with Image.open(path) as img:
        img.load()
        assert img.size == (320, 240)
        assert img.mode in ("I;16", "I;16B", "I;16L", "I")  # older Pillow reports 16-bit PNGs as "I"
        low, high = img.getextrema()
        assert 0 <= low < high <= 65535 and high > 255  # uses the 16-bit range
        width, height = img.size
        # Disparity: the floor at the bottom is nearer (brighter) than the back wall at the top centre.
        assert img.getpixel((width // 2, height - 1)) > img.getpixel((width // 2, 10))


@pytest.mark.parametrize("rel", _files("audio"))
def test_audio_is_16khz_pcm_wav_over_one_second(rel):
    info = sf.info(str(REPO_ROOT / rel))
    assert (info.format, info.subtype) == ("WAV", "PCM_16")
    assert info.samplerate == 16_000 and info.channels == 1
    assert info.duration > 1.0
    samples, _ = sf.read(str(REPO_ROOT / rel), dtype="float32")
    assert len(samples) == info.frames and 0.05 < float(abs(samples).max()) <= 1.0  # not silent


@pytest.mark.parametrize("rel", _files("video"))
def test_video_decodes_at_least_30_frames(rel):
    with av.open(str(REPO_ROOT / rel)) as container:
        assert container.streams.video, "no video stream"
        stream = container.streams.video[0]
        assert stream.codec_context.name in ("h264", "mpeg4")
        assert (stream.codec_context.width, stream.codec_context.height) == (320, 240)
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    assert len(frames) >= 30
    assert frames[0].shape == (240, 320, 3)
    assert (frames[0] != frames[-1]).any()  # something moves


@pytest.mark.parametrize("rel", _files("imu"))
def test_imu_csv_has_2000_numeric_rows_of_7_columns(rel):
    with open(REPO_ROOT / rel, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["t", "acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
    data = [[float(cell) for cell in row] for row in rows[1:]]
    assert len(data) == 2000
    assert all(len(row) == 7 and all(math.isfinite(v) for v in row) for row in data)
    times = [row[0] for row in data]
    assert times[0] == 0.0 and abs(times[1] - 1 / 200) < 1e-9 and abs(times[-1] - 1999 / 200) < 1e-9
    mean_acc_z = sum(row[3] for row in data) / len(data)
    assert abs(mean_acc_z - 9.81) < 0.5  # gravity on z


@pytest.mark.parametrize(("modality", "rel"), [(m, rel) for m in MODALITIES for rel in _files(m)], ids=lambda value: str(value))
def test_demo_loaders_accept_every_example(modality, rel):
    """The app's own preprocessing turns each example into a finite tensor (no model needed)."""
    torch = pytest.importorskip("torch")
    from pandagpt_demo.model.modalities import load_modality

    tensor = load_modality(modality, REPO_ROOT / rel)
    assert isinstance(tensor, torch.Tensor) and tensor.numel() > 0
    assert torch.isfinite(tensor).all()
