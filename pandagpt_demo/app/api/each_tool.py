"""`/answer_each` and `/answer_blend`: one question about several files, answered once with each file
alone and once with their weighted sum, or from blends of two files, all decoded together, for
programs (`gradio_client` streams the rows) and, through Gradio, MCP tools (which get them whole).
Every call is a one-shot session whose files are released when it ends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict

from gradio.data_classes import FileData

from pandagpt_demo.app.answering.core import Answering
from pandagpt_demo.app.conversation.chatlog import Exchange
from pandagpt_demo.app.conversation.each import MAX_BLEND_STEPS, Row, answer_blend, answer_each
from pandagpt_demo.app.conversation.session import ChatSession
from pandagpt_demo.config import SamplingParams
from pandagpt_demo.errors import BadInput, BadSetting
from pandagpt_demo.model.modalities import Modality

from .attachments import api_attachments
from .one_shot import one_shot, tool_description


def _rows_json(rows: list[Row]) -> str:
    return json.dumps([asdict(row) for row in rows])


class EachTool:
    """The `/answer_each` and `/answer_blend` endpoints of one app."""

    def __init__(self, core: Answering) -> None:
        self.core = core

    @classmethod
    def description(cls) -> str:
        """The MCP tool's description: what it does, and how its files arrive."""
        return tool_description(cls.answer_each)

    @classmethod
    def blend_description(cls) -> str:
        return tool_description(cls.answer_blend)

    def _session(
        self, question: object, files: tuple, weights: object, max_new_tokens: object, video_sound: object = False
    ) -> tuple[ChatSession, int]:
        """A one-shot session holding the open question and the files in use, and the answers' length."""
        if not isinstance(question, str) or not question.strip():
            raise BadSetting("question must be a non-empty string.")
        attached = api_attachments(dict(zip(Modality, files)), weights, self.core.settings, video_sound)
        params = self.core.settings.params(max_new_tokens, SamplingParams.top_p, 0.0)
        return ChatSession([Exchange(question.strip())], in_use=attached), params.max_new_tokens

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
        video_sound: bool = False,
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
            video_sound: also hear each video's own sound, as an audio input of its own (weight 1) right after the video; a video without sound is seen only. Default false: PandaGPT sees a video's frames, not its sound. Its sound is then a row of its own.
        """
        core = self.core
        with one_shot(core, "answer_each") as owner:
            session, tokens = self._session(question, (image, audio, video, thermal, depth, imu), weights, max_new_tokens, video_sound)
            model, engine = core.served()
            with core.house.answering(owner, session.files()):
                for rows in answer_each(session, model, engine, tokens):
                    yield _rows_json(rows)

    def answer_blend(
        self,
        question: str,
        image: FileData | list[FileData] | None = None,
        audio: FileData | list[FileData] | None = None,
        video: FileData | list[FileData] | None = None,
        thermal: FileData | list[FileData] | None = None,
        depth: FileData | list[FileData] | None = None,
        imu: FileData | list[FileData] | None = None,
        steps: int = 5,
        max_new_tokens: int = SamplingParams.max_new_tokens,
    ) -> Iterator[str]:
        """Multimodal arithmetic: given exactly two files A and B, PandaGPT answers the question from a·A + (1 − a)·B at `steps` evenly spaced a from 0 (B alone) to 1 (A alone), greedily, all decoded together. A is the first file given, in the order image, audio, video, thermal, depth, imu. Returns a JSON list of rows {"label", "text", "done", "error"}, B alone first (gradio_client's submit streams it as the rows so far).

        Args:
            question: what to ask about the blends, in English.
            image: a photo or picture file (png, jpg, webp, ...), or a list of them.
            audio: a sound file (wav, mp3, flac, ...), or a list of them.
            video: a video file (mp4, mov, webm, ...), or a list of them.
            thermal: a thermal (infrared) image file, grey levels as heat, or a list of them.
            depth: a depth map (16-bit png of millimetres, or a 2-D .npy of metres), or a list of them.
            imu: a motion recording (.csv or .npy with six columns: 3 accelerometer, 3 gyroscope), or a list of them.
            steps: how many blends, 2 to 9 (5: a = 0, 0.25, 0.5, 0.75, 1).
            max_new_tokens: the longest answer, in tokens (1 to 1024).
        """
        core = self.core
        with one_shot(core, "answer_blend") as owner:
            session, tokens = self._session(question, (image, audio, video, thermal, depth, imu), None, max_new_tokens)
            if len(session.in_use) != 2:
                raise BadInput(f"A blend takes exactly two files, A and B, not {len(session.in_use)}.")
            if isinstance(steps, bool) or not isinstance(steps, int):
                raise BadSetting(f"steps must be a whole number from 2 to {MAX_BLEND_STEPS}, not {steps!r}.")
            model, engine = core.served()
            with core.house.answering(owner, session.files()):
                for rows in answer_blend(session, model, engine, tokens, (0, 1), steps):
                    yield _rows_json(rows)
