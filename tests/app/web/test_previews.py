"""How attached files look in the conversation: media as they are, thermal and depth through a
colour map, IMU as a plot; previews written once, inside the upload folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pandagpt_demo.app.conversation.chatlog import Attachment
from pandagpt_demo.app.web.previews import DEPTH, HEAT, IMU_COLOURS, Previews, colour_table
from pandagpt_demo.model.modalities import Modality
from tests.media import write_depth_png16, write_image, write_imu_csv, write_thermal


def test_photos_sounds_and_videos_are_shown_as_they_are(tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    write_image(photo)
    previews = Previews(tmp_path / "uploads")
    attachment = Attachment.of(photo, Modality.IMAGE)
    assert previews.item(attachment) == {"path": str(photo), "alt_text": "photo.jpg"}
    assert previews.paths([attachment]) == []


def test_thermal_and_depth_are_coloured_and_imu_is_plotted(tmp_path: Path) -> None:
    heat, depth, walk = tmp_path / "heat.png", tmp_path / "depth.png", tmp_path / "walk.csv"
    pixels = write_thermal(heat)
    write_depth_png16(depth)
    write_imu_csv(walk, np.random.default_rng(0).normal(size=(400, 6)))
    previews = Previews(tmp_path / "uploads")
    for path, kind, table in ((heat, Modality.THERMAL, colour_table(HEAT)), (depth, Modality.DEPTH, colour_table(DEPTH)), (walk, Modality.IMU, None)):
        attachment = Attachment.of(path, kind)
        item = previews.item(attachment)
        shown = Path(item["path"])
        assert shown.parent == tmp_path / "uploads" / "previews" and item["alt_text"] == f"{path.name} ({kind.value})"
        assert previews.paths([attachment]) == [shown]
        with Image.open(shown) as picture:
            assert picture.mode == "RGB" and max(picture.size) <= 320
            rgb = np.asarray(picture)
        if table is not None:  # every pixel is a colour of the map
            assert {tuple(c) for c in rgb.reshape(-1, 3)} <= {tuple(c) for c in table}
        else:  # six coloured lines on white
            assert set(IMU_COLOURS) | {(255, 255, 255)} == {tuple(int(v) for v in c) for c in rgb.reshape(-1, 3)}
    hottest = np.unravel_index(pixels.argmax(), pixels.shape)
    with Image.open(previews.item(Attachment.of(heat, Modality.THERMAL))["path"]) as picture:
        scale = picture.size[0] / pixels.shape[1]
        centre = np.asarray(picture)[int(hottest[0] * scale), int(hottest[1] * scale)]
    assert tuple(centre) == tuple(colour_table(HEAT)[pixels.max()]), "the warmest spot has the map's bright end"


def test_a_png_taken_as_thermal_then_depth_gets_each_preview_and_a_broken_one_none(tmp_path: Path) -> None:
    heat = tmp_path / "heat.png"
    write_thermal(heat)
    previews = Previews(tmp_path / "uploads")
    attachment = Attachment.of(heat, Modality.THERMAL)
    as_thermal = previews.item(attachment)["path"]
    attachment.kind = Modality.DEPTH
    as_depth = previews.item(attachment)["path"]
    assert as_thermal != as_depth and Path(as_depth).exists()
    broken = tmp_path / "broken.csv"
    broken.write_text("a,b\n1,2\n")
    assert previews.item(Attachment.of(broken, Modality.IMU)) is None
    gone = Attachment.of(heat, Modality.THERMAL)
    gone.path = None
    assert previews.item(gone) is None
