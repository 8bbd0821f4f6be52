"""`/chat`: one question about files, for programs (`gradio_client`) and, through Gradio, the MCP tool.

Its contract is its own, apart from the page's events: the files by modality (one or a list each),
a weight per file, the sampling settings and earlier [question, answer] pairs; the answer streams
as the text so far. Every call is a one-shot session whose files are released when it ends. The
server registers `ChatTool.ask_pandagpt` on the page's Blocks (its docstring is the MCP tool's
description).
"""

from __future__ import annotations

from collections.abc import Iterator

import gradio as gr
from gradio.data_classes import FileData

from pandagpt_demo.app.answering.core import Answering
from pandagpt_demo.app.conversation.session import ChatSession
from pandagpt_demo.config import SamplingParams
from pandagpt_demo.errors import BadSetting
from pandagpt_demo.model.modalities import Modality

from .attachments import api_attachments
from .one_shot import one_shot, tool_description


class ChatTool:
    """The `/chat` endpoint of one app."""

    def __init__(self, core: Answering) -> None:
        self.core = core

    @classmethod
    def description(cls) -> str:
        """The MCP tool's description: what it does, and how its files arrive."""
        return tool_description(cls.ask_pandagpt)

    def ask_pandagpt(
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
        top_p: float = SamplingParams.top_p,
        temperature: float = SamplingParams.temperature,
        history: list[list[str]] | None = None,
        video_sound: bool = False,
    ) -> Iterator[str]:
        """Ask PandaGPT, a model that sees and hears, a question about images, sounds, videos, thermal images, depth maps or IMU motion recordings; returns its answer (gradio_client's submit streams it as the text so far; an MCP client gets it whole). Every file's embedding is summed with its weight, so two images with weights 1 and -1 ask about their difference.

        Args:
            question: what to ask about the files, in English.
            image: a photo or picture file (png, jpg, webp, ...), or a list of them.
            audio: a sound file (wav, mp3, flac, ...), or a list of them.
            video: a video file (mp4, mov, webm, ...), or a list of them.
            thermal: a thermal (infrared) image file, grey levels as heat, or a list of them.
            depth: a depth map (16-bit png of millimetres, or a 2-D .npy of metres), or a list of them.
            imu: a motion recording (.csv or .npy with six columns: 3 accelerometer, 3 gyroscope), or a list of them.
            weights: multimodal-arithmetic weight per modality name, e.g. {"image": [1, -1]}: a number (default 1) or one number per file, from -2 to 2.
            max_new_tokens: the longest answer, in tokens (1 to 1024).
            top_p: nucleus sampling threshold, 0 to 1 (the default 0.01 is nearly greedy).
            temperature: sampling temperature, 0 (greedy) to 2.
            history: earlier [question, answer] pairs of this conversation, oldest first.
            video_sound: also hear each video's own sound, as an audio input of its own (weight 1) right after the video; a video without sound is seen only. Default false: PandaGPT sees a video's frames, not its sound.
        """
        core = self.core
        with one_shot(core, "chat") as owner:
            if not isinstance(question, str) or not question.strip():
                raise BadSetting("question must be a non-empty string.")
            files = dict(zip(Modality, (image, audio, video, thermal, depth, imu)))
            attached = api_attachments(files, weights, core.settings, video_sound)
            session = ChatSession.from_history(api_history(history))
            params = core.settings.params(max_new_tokens, top_p, temperature)
            with core.house.answering(owner, [a.path for a in attached]):
                yield from session.ask(*core.served(), question.strip(), params, gr.Info, attached=attached)


def api_history(history: object) -> list[tuple[str, str]]:
    """`/chat`'s history: earlier [question, answer] pairs of strings."""
    pairs = history or []
    if not isinstance(pairs, list) or not all(
        isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(text, str) for text in pair) for pair in pairs
    ):
        raise BadSetting("history must be a list of [question, answer] pairs of strings.")
    return [(question, answer) for question, answer in pairs]
