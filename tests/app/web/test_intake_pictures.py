"""The pictures of what ImageBind took in (intake_pictures.py): what is drawn lit is exactly the
intake's box, clips and window, scaled to the picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from pandagpt_demo.app.web.intake_pictures import BOX, CROPS, FRAME_HEIGHT, LIT, WIDE, picture_of, save_picture
from pandagpt_demo.model.intake import took_in
from pandagpt_demo.model.modalities import Modality
from tests.media import write_depth_npy, write_thermal, write_video


def where(picture: Image.Image, colour: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the pixels of exactly this colour."""
    return np.nonzero(np.all(np.asarray(picture) == colour, axis=-1))


@pytest.mark.parametrize("size", [(640, 427), (300, 500), (50, 40)], ids=["landscape", "portrait", "small"])
def test_the_box_drawn_is_the_crop(tmp_path: Path, size: tuple[int, int]) -> None:
    path = tmp_path / "photo.png"
    Image.new("RGB", size, (120, 160, 200)).save(path)
    intake = took_in(Modality.IMAGE, path)
    picture = picture_of(intake)
    scale = picture.width / size[0]
    rows, columns = where(picture, BOX)
    box = intake.crops[0]
    assert abs(columns.min() - box.left * scale) <= 1 and abs(columns.max() + 1 - box.right * scale) <= 1
    assert abs(rows.min() - box.top * scale) <= 1 and abs(rows.max() + 1 - box.bottom * scale) <= 1
    pixels = np.asarray(picture).astype(int)
    assert pixels[picture.height // 2, picture.width // 2].tolist() == [120, 160, 200], "the crop as it is"
    corner = pixels[0, 0] if box.left * scale >= 2 or box.top * scale >= 2 else pixels[-1, -1]
    assert np.abs(corner - np.array([48, 64, 80])).max() <= 1, "outside it dimmed to 40%"


def test_thermal_and_depth_are_drawn_in_their_colours_with_the_box(tmp_path: Path) -> None:
    write_thermal(tmp_path / "t.png", (320, 240))
    write_depth_npy(tmp_path / "d.npy", (240, 320))
    for kind, path in ((Modality.THERMAL, tmp_path / "t.png"), (Modality.DEPTH, tmp_path / "d.npy")):
        picture = picture_of(took_in(kind, path))
        assert picture.mode == "RGB" and len(where(picture, BOX)[0]) > 100


def test_the_lit_waveform_is_the_heard_clips(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    t = np.arange(60 * 16_000) / 16_000
    sf.write(path, (0.5 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 16_000)
    intake = took_in(Modality.AUDIO, path)
    _, columns = where(picture_of(intake), LIT)
    lit = sorted(set(columns.tolist()))
    expected = sorted(
        {x for s in intake.spans for x in range(round(s.start / 60 * WIDE), max(round(s.end / 60 * WIDE), round(s.start / 60 * WIDE) + 1))}
    )
    assert set(lit) <= set(expected) and len(lit) >= len(expected) - 3, "only the heard clips' columns are lit"


def test_the_imu_window_drawn_is_the_window(tmp_path: Path) -> None:
    np.save(tmp_path / "walk.npy", np.random.default_rng(0).normal(size=(10_000, 6)))
    intake = took_in(Modality.IMU, tmp_path / "walk.npy")
    _, columns = where(picture_of(intake), LIT)
    assert (columns.min(), columns.max() + 1) == (round(intake.spans[0].start / 50 * WIDE), round(intake.spans[0].end / 50 * WIDE))


def test_a_videos_ten_frames_are_drawn_with_their_three_crops(tmp_path: Path) -> None:
    write_video(tmp_path / "v.mp4", seconds=4, fps=10, size=(320, 240))
    intake = took_in(Modality.VIDEO, tmp_path / "v.mp4")
    picture = picture_of(intake)
    width = round(FRAME_HEIGHT * 320 / 240)
    assert picture.width == 5 * (width + 6) + 6
    for colour, box in zip(CROPS, intake.crops):
        _, columns = where(picture.crop((6, 4, 6 + width, 4 + FRAME_HEIGHT)), colour)  # the first frame
        assert abs(columns.min() - box.left * width / 320) <= 1 and abs(columns.max() + 1 - box.right * width / 320) <= 1.5
    save_picture(intake, tmp_path / "out" / "v.png")
    assert (tmp_path / "out" / "v.png").exists() and not (tmp_path / "out" / "v.part.png").exists()
