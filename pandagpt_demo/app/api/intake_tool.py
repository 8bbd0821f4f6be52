"""`/imagebind_intake`: what ImageBind takes in from each file, as data, for programs (`gradio_client`)
and, through Gradio, an MCP tool: the crop's box of an image, the frames and crops of a video, the
clips heard of a sound, the window of an IMU recording, with one plain sentence each. The same
figures as the page's panel (`Answering.intakes`); no model is needed, so it answers while one loads."""

from __future__ import annotations

import json

from gradio.data_classes import FileData

from pandagpt_demo.app.answering.core import Answering
from pandagpt_demo.model.modalities import Modality

from .attachments import api_attachments
from .one_shot import one_shot, tool_description


class IntakeTool:
    """The `/imagebind_intake` endpoint of one app."""

    def __init__(self, core: Answering) -> None:
        self.core = core

    @classmethod
    def description(cls) -> str:
        """The MCP tool's description: what it does, and how its files arrive."""
        return tool_description(cls.imagebind_intake)

    def imagebind_intake(
        self,
        image: FileData | list[FileData] | None = None,
        audio: FileData | list[FileData] | None = None,
        video: FileData | list[FileData] | None = None,
        thermal: FileData | list[FileData] | None = None,
        depth: FileData | list[FileData] | None = None,
        imu: FileData | list[FileData] | None = None,
        video_sound: bool = False,
    ) -> str:
        """Say exactly what ImageBind, the encoder PandaGPT answers from, takes in from each file: an image's centre crop, a video's ten frames (two per 2 s clip, each as three crops), a sound's three 2 s clips, an IMU recording's centre 10 s. Returns a JSON object {"files": [...]}, one entry per file with "name", "kind", "summary" (one sentence), "short", "fraction" (of the file taken in), "large_loss", and the figures: "width"/"height" and "crops" (boxes in the file's pixels: left, top, right, bottom), "duration" (seconds), "spans" (start/end seconds heard or taken in), "frames" (index and time of each frame seen), "samples", "padded" (seconds added), "note".

        Args:
            image: a photo or picture file (png, jpg, webp, ...), or a list of them.
            audio: a sound file (wav, mp3, flac, ...), or a list of them.
            video: a video file (mp4, mov, webm, ...), or a list of them.
            thermal: a thermal (infrared) image file, grey levels as heat, or a list of them.
            depth: a depth map (16-bit png of millimetres, or a 2-D .npy of metres), or a list of them.
            imu: a motion recording (.csv or .npy with six columns: 3 accelerometer, 3 gyroscope), or a list of them.
            video_sound: also hear each video's own sound, as an audio input of its own (weight 1) right after the video; a video without sound is seen only. Default false: PandaGPT sees a video's frames, not its sound.
        """
        core = self.core
        with one_shot(core, "imagebind_intake") as owner:
            attached = api_attachments(dict(zip(Modality, (image, audio, video, thermal, depth, imu))), None, core.settings, video_sound)
            core.house.hold(owner, [a.path for a in attached])
            entries = [{"name": a.name, **core.intakes.of(a).as_data()} for a in attached]
            return json.dumps({"files": entries})  # JSON text: what gradio_client and MCP clients both read as it is
