"""`/imagebind_view`: ImageBind's own view of some files, for programs (`gradio_client`) and, through
Gradio, an MCP tool: how alike the files are and, given labels, which label each one is. The answer
is JSON text (Gradio's MCP server would give a dict to MCP clients as its Python repr). Every call
is a one-shot session whose files are released when it ends."""

from __future__ import annotations

import json

from gradio.data_classes import FileData

from pandagpt_demo.app.answering.core import Answering
from pandagpt_demo.app.conversation.session import ChatSession
from pandagpt_demo.app.conversation.view import imagebind_view
from pandagpt_demo.errors import BadSetting
from pandagpt_demo.model.modalities import Modality

from .attachments import api_attachments
from .one_shot import one_shot, tool_description


class ViewTool:
    """The `/imagebind_view` endpoint of one app."""

    def __init__(self, core: Answering) -> None:
        self.core = core

    @classmethod
    def description(cls) -> str:
        """The MCP tool's description: what it does, and how its files arrive."""
        return tool_description(cls.imagebind_view)

    def imagebind_view(
        self,
        image: FileData | list[FileData] | None = None,
        audio: FileData | list[FileData] | None = None,
        video: FileData | list[FileData] | None = None,
        thermal: FileData | list[FileData] | None = None,
        depth: FileData | list[FileData] | None = None,
        imu: FileData | list[FileData] | None = None,
        labels: str = "",
        video_sound: bool = False,
    ) -> str:
        """See files as ImageBind (the encoder PandaGPT answers from) sees them: the cosine similarity of every pair of files, and, given comma-separated labels, each file's zero-shot probabilities over the labels, as ImageBind's own example computes them. Returns a JSON object: "files" (names), "similarity" (files x files), "labels", "probabilities" (files x labels).

        Args:
            image: a photo or picture file (png, jpg, webp, ...), or a list of them.
            audio: a sound file (wav, mp3, flac, ...), or a list of them.
            video: a video file (mp4, mov, webm, ...), or a list of them.
            thermal: a thermal (infrared) image file, grey levels as heat, or a list of them.
            depth: a depth map (16-bit png of millimetres, or a 2-D .npy of metres), or a list of them.
            imu: a motion recording (.csv or .npy with six columns: 3 accelerometer, 3 gyroscope), or a list of them.
            labels: candidate labels separated by commas, e.g. "dog barking, rain, car engine" (at most 64); empty for the similarities alone.
            video_sound: also hear each video's own sound, as an audio input of its own (weight 1) right after the video; a video without sound is seen only. Default false: PandaGPT sees a video's frames, not its sound.
        """
        core = self.core
        with one_shot(core, "imagebind_view") as owner:
            if not isinstance(labels, str):
                raise BadSetting(f"labels must be text, labels separated by commas, not {labels!r}.")
            files = dict(zip(Modality, (image, audio, video, thermal, depth, imu)))
            session = ChatSession(in_use=api_attachments(files, None, core.settings, video_sound))
            model, _ = core.served()
            with core.house.answering(owner, session.files()):
                view = imagebind_view(model, session, labels, core.labels)
            return json.dumps(view.as_dict())  # JSON text: what gradio_client and MCP clients both read as it is
