"""`/answer_each`: one question about several files, answered once with each file alone and once with
their weighted sum, all decoded together, for programs (`gradio_client` streams the rows) and,
through Gradio, an MCP tool (which gets them whole). Every call is a one-shot session whose files
are released when it ends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict

from gradio.data_classes import FileData

from pandagpt_demo.app.answering.core import Answering
from pandagpt_demo.app.conversation.chatlog import Exchange
from pandagpt_demo.app.conversation.each import answer_each
from pandagpt_demo.app.conversation.session import ChatSession
from pandagpt_demo.config import SamplingParams
from pandagpt_demo.errors import BadSetting
from pandagpt_demo.model.modalities import Modality

from .attachments import api_attachments
from .one_shot import one_shot, tool_description


class EachTool:
    """The `/answer_each` endpoint of one app."""

    def __init__(self, core: Answering) -> None:
        self.core = core

    @classmethod
    def description(cls) -> str:
        """The MCP tool's description: what it does, and how its files arrive."""
        return tool_description(cls.answer_each)

    def answer_each(
        self,
        question: str,
        image: FileData | list[FileData] | None = None,
        audio: FileData | list[FileData] | None = None,
        video: FileData | list[FileData] | None = None,
        thermal: FileData | list[FileData] | None = None,
        depth: FileData | list[FileData] | None = None,
        imu: FileData | list[FileData] | None = None,
        weights: dict[str, float | list[float]] | None = None,
        max_new_tokens: int = SamplingParams.max_new_tokens,
    ) -> Iterator[str]:
        """Compare what each file makes of a question: PandaGPT answers it once with each file alone and once with all of them summed with their weights, greedily, all decoded together. Returns a JSON list of rows {"label", "text", "done", "error"}, the weighted sum's last (gradio_client's submit streams it as the rows so far).

        Args:
            question: what to ask about the files, in English.
            image: a photo or picture file (png, jpg, webp, ...), or a list of them.
            audio: a sound file (wav, mp3, flac, ...), or a list of them.
            video: a video file (mp4, mov, webm, ...), or a list of them.
            thermal: a thermal (infrared) image file, grey levels as heat, or a list of them.
            depth: a depth map (16-bit png of millimetres, or a 2-D .npy of metres), or a list of them.
            imu: a motion recording (.csv or .npy with six columns: 3 accelerometer, 3 gyroscope), or a list of them.
            weights: the weight of each file in the summed row, per modality name, e.g. {"image": [1, -1]}: a number (default 1) or one number per file, from -2 to 2.
            max_new_tokens: the longest answer, in tokens (1 to 1024).
        """
        core = self.core
        with one_shot(core, "answer_each") as owner:
            if not isinstance(question, str) or not question.strip():
                raise BadSetting("question must be a non-empty string.")
            files = dict(zip(Modality, (image, audio, video, thermal, depth, imu)))
            attached = api_attachments(files, weights, core.settings)
            params = core.settings.params(max_new_tokens, SamplingParams.top_p, 0.0)
            session = ChatSession([Exchange(question.strip())], in_use=attached)  # the open question, answered per file
            model, engine = core.served()
            with core.house.answering(owner, session.files()):
                for rows in answer_each(session, model, engine, params.max_new_tokens):
                    yield json.dumps([asdict(row) for row in rows])
