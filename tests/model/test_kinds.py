"""Guessing an attached file's kind from the file itself, and the kinds it could also be."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pandagpt_demo.model.kinds import guess_kind, possible_kinds
from pandagpt_demo.model.modalities import Modality
from tests.conftest import REPO_ROOT
from tests.media import imu_ramp, write_compressed_audio, write_depth_npy, write_depth_png16, write_image, write_imu_csv, write_thermal, write_video

M = Modality


def _written(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    writers = {
        "photo.png": lambda: write_image(path),
        "photo.jpg": lambda: write_image(path),
        "heat.png": lambda: write_thermal(path),
        "disparity.png": lambda: write_depth_png16(path),
        "metres.npy": lambda: write_depth_npy(path),
        "walk.csv": lambda: write_imu_csv(path, imu_ramp(50)),
        "walk.npy": lambda: np.save(path, imu_ramp(50)),
        "channels_first.npy": lambda: np.save(path, imu_ramp(50).T),
        "clip.mp4": lambda: write_video(path, seconds=1),
        "voice.webm": lambda: write_compressed_audio(path, seconds=1),
        "broken.png": lambda: path.write_bytes(b"not a png"),
        "notes.txt": lambda: path.write_text("hello"),
    }
    writers[name]()
    return path


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("photo.png", M.IMAGE),
        ("photo.jpg", M.IMAGE),
        ("heat.png", M.THERMAL),  # one 8-bit channel
        ("disparity.png", M.DEPTH),  # one 16-bit channel
        ("metres.npy", M.DEPTH),  # a 2-D array not of six channels
        ("walk.csv", M.IMU),
        ("walk.npy", M.IMU),
        ("channels_first.npy", M.IMU),
        ("clip.mp4", M.VIDEO),
        ("voice.webm", M.AUDIO),  # a WebM without a picture: what browsers record
        ("broken.png", M.IMAGE),  # unreadable: its suffix's first kind; the loader will say what is wrong
        ("notes.txt", None),
    ],
)
def test_kind_is_guessed_from_the_file(tmp_path: Path, name: str, kind: Modality | None) -> None:
    assert guess_kind(_written(tmp_path, name)) == kind


def test_the_committed_examples_are_guessed_as_the_manifest_says() -> None:
    examples = REPO_ROOT / "examples"
    assert guess_kind(examples / "thermal_person.png") == M.THERMAL
    assert guess_kind(examples / "depth_room.png") == M.DEPTH
    assert guess_kind(examples / "red_apple.png") == M.IMAGE
    assert guess_kind(examples / "bouncing_ball.mp4") == M.VIDEO


def test_a_png_could_be_an_image_thermal_or_depth() -> None:
    assert possible_kinds("x.png") == (M.IMAGE, M.THERMAL, M.DEPTH)
    assert possible_kinds("x.npy") == (M.DEPTH, M.IMU)
    assert possible_kinds("x.wav") == (M.AUDIO,)
    assert possible_kinds("x.webm") == (M.AUDIO, M.VIDEO)
    assert possible_kinds("x.txt") == ()
