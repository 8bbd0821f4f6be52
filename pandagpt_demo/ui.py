"""The Gradio app: one Blocks page whose chat streams PandaGPT's answers, plus the `/chat` API.

Each browser tab (and each `gradio_client.Client`) has its own `ChatSession` in `gr.State`: its
history, uploads and cached embeddings are never seen by anyone else. The model is shared.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from gradio.data_classes import FileData

from .batching import QueueFull
from .config import SamplingParams
from .modalities import MediaError, Modality
from .model import PandaGPT
from .runtime import ModelHandle
from .session import ChatSession, Inputs

EXAMPLES_FILE = Path(__file__).resolve().parent.parent / "examples" / "examples.json"
MODALITIES = tuple(Modality)  # the order of the file inputs everywhere below
USER_ERRORS = (MediaError, ValueError, QueueFull)  # shown to the user; the chat goes on


@dataclass(frozen=True)
class UISettings:
    """Defaults of the sampling sliders (those of the original demo)."""

    max_new_tokens: int = 256
    top_p: float = 0.01
    temperature: float = 1.0


def on_zero_gpu() -> bool:
    """Whether this is a ZeroGPU Space: there the GPU exists only inside `spaces.GPU` calls, so
    answers are decoded inside each request rather than by the shared batching thread."""
    return "SPACES_ZERO_GPU" in os.environ


def on_gpu(fn):
    """Run `fn` under ZeroGPU's `spaces.GPU` on a ZeroGPU Space; unchanged elsewhere."""
    if not on_zero_gpu():
        return fn
    import spaces

    return spaces.GPU(fn)


def _file_path(value: str | dict | FileData | None) -> str | None:
    """A component's or an API client's file value as a local path."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, FileData):
        return value.path
    return value.get("path")


def _settings(args: tuple) -> tuple[Inputs, SamplingParams, ChatSession]:
    """Unpack the page's shared inputs: six files, six weights, three sliders, the session."""
    n = len(MODALITIES)
    files, weights, (max_new_tokens, top_p, temperature, session) = args[:n], args[n : 2 * n], args[2 * n :]
    inputs = Inputs.of({m: _file_path(f) for m, f in zip(MODALITIES, files)}, dict(zip(MODALITIES, weights)))
    return inputs, _params(max_new_tokens, top_p, temperature), session


def _params(max_new_tokens: float, top_p: float, temperature: float) -> SamplingParams:
    return SamplingParams(max_new_tokens=int(max_new_tokens), top_p=float(top_p), temperature=float(temperature))


def _example_rows() -> list[list[str | None]]:
    """Gallery rows from examples/examples.json: question, then one file (or None) per modality."""
    if not EXAMPLES_FILE.exists():
        return []
    root = EXAMPLES_FILE.parent.parent
    rows = json.loads(EXAMPLES_FILE.read_text())
    return [[row["question"], *[str(root / row[m.value]) if row.get(m.value) else None for m in MODALITIES]] for row in rows]


class ChatApp:
    """Event handlers of the page; every one works on the caller's own session."""

    def __init__(self, handle: ModelHandle) -> None:
        self.handle = handle

    def _model(self) -> PandaGPT:
        try:
            return self.handle.get(timeout=0)
        except RuntimeError as error:
            raise gr.Error(str(error)) from error

    def status(self) -> str:
        return f"{self.handle.choice.banner}  \n{self.handle.status}"

    def _answer(self, session: ChatSession, start: Callable[[PandaGPT], Iterator[str]]) -> Iterator[tuple]:
        """Stream (chat, session) while `start(model)` answers; user errors become a visible message."""
        try:
            for _ in start(self._model()):
                yield session.messages(), session
        except USER_ERRORS as error:
            raise gr.Error(str(error)) from error
        yield session.messages(), session

    @on_gpu
    def send(self, question: str, *args) -> Iterator[tuple]:
        """Ask a question about the given files; streams (chat, textbox, session)."""
        inputs, params, session = _settings(args)
        question = (question or "").strip()
        if not question:
            gr.Warning("Type a question first.")
            yield session.messages(), "", session
            return
        for messages, session in self._answer(session, lambda model: session.ask(model, question, inputs, params, gr.Warning)):
            yield messages, "", session

    @on_gpu
    def regenerate(self, *args) -> Iterator[tuple]:
        """Answer the last question again."""
        inputs, params, session = _settings(args)
        if not session.conversation.turns:
            gr.Warning("Nothing to regenerate yet.")
            yield session.messages(), session
            return
        yield from self._answer(session, lambda model: session.regenerate(model, inputs, params, gr.Warning))

    def undo(self, session: ChatSession) -> tuple:
        """Remove the last turn and put its question back in the textbox."""
        question = session.undo()
        return session.messages(), question or "", session

    def clear(self, session: ChatSession) -> tuple:
        """Forget history, uploads and cached embeddings."""
        session.clear()
        return (session.messages(), "", session, *[None] * len(MODALITIES))

    @on_gpu
    def chat_api(
        self,
        question: str,
        image: FileData | None = None,
        audio: FileData | None = None,
        video: FileData | None = None,
        thermal: FileData | None = None,
        depth: FileData | None = None,
        imu: FileData | None = None,
        weights: dict[str, float] | None = None,
        max_new_tokens: int = 256,
        top_p: float = 0.01,
        temperature: float = 1.0,
        history: list[list[str]] | None = None,
    ) -> Iterator[str]:
        """Ask PandaGPT about the given files; streams the answer text so far.

        `history` holds earlier [question, answer] pairs; `weights` maps modality names
        (image, audio, video, thermal, depth, imu) to multimodal-arithmetic weights (default 1).
        """
        files = {m: _file_path(f) for m, f in zip(MODALITIES, (image, audio, video, thermal, depth, imu))}
        try:
            session = ChatSession.from_history([(q, a) for q, a in history or []])
            inputs = Inputs.of(files, {Modality(k): v for k, v in (weights or {}).items()})
            yield from session.ask(self._model(), question, inputs, _params(max_new_tokens, top_p, temperature), gr.Info)
        except USER_ERRORS as error:
            raise gr.Error(str(error)) from error


def build_demo(handle: ModelHandle, settings: UISettings = UISettings()) -> gr.Blocks:
    app = ChatApp(handle)
    with gr.Blocks(title="PandaGPT") as demo:
        session = gr.State(ChatSession())
        gr.Markdown("# PandaGPT\nGive it an image, a sound, a video, a thermal image, a depth map or an IMU recording — any mix — and ask.")
        status = gr.Markdown(app.status(), elem_id="status")
        with gr.Row():
            with gr.Column(scale=2):
                with gr.Tab("Image"):
                    image = gr.Image(type="filepath", label="Image", sources=["upload", "clipboard"])
                with gr.Tab("Audio"):
                    audio = gr.Audio(type="filepath", label="Audio", sources=["upload", "microphone"])
                with gr.Tab("Video"):
                    video = gr.Video(label="Video", sources=["upload"])
                with gr.Tab("Thermal"):
                    thermal = gr.Image(type="filepath", label="Thermal image", sources=["upload"])
                with gr.Tab("Depth"):
                    depth = gr.File(label="Depth map (16-bit PNG disparity or .npy metres)", file_types=list(Modality.DEPTH.extensions))
                with gr.Tab("IMU"):
                    imu = gr.File(label="IMU recording (.csv or .npy, 6 channels at 200 Hz)", file_types=list(Modality.IMU.extensions))
                with gr.Accordion("Multimodal arithmetic: weight of each input", open=False):
                    weights = [gr.Slider(-2, 2, value=1.0, step=0.1, label=m.value.capitalize()) for m in MODALITIES]
                with gr.Accordion("Sampling", open=True):
                    max_new_tokens = gr.Slider(1, 1024, value=settings.max_new_tokens, step=1, label="Maximum new tokens")
                    top_p = gr.Slider(0, 1, value=settings.top_p, step=0.01, label="Top P")
                    temperature = gr.Slider(0, 2, value=settings.temperature, step=0.01, label="Temperature")
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(label="PandaGPT", height=480, elem_id="chatbot")
                with gr.Row():
                    question = gr.Textbox(label="Question", placeholder="Ask about your files, then press Enter", show_label=False, scale=5, elem_id="question")
                    send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
                with gr.Row():
                    stop = gr.Button("Stop", elem_id="stop")
                    regenerate = gr.Button("Regenerate", elem_id="regenerate")
                    undo = gr.Button("Undo", elem_id="undo")
                    clear = gr.Button("Clear", elem_id="clear")
        files = [image, audio, video, thermal, depth, imu]
        rows = _example_rows()
        if rows:
            gr.Examples(rows, inputs=[question, *files], label="Examples (made by examples/make_examples.py)")

        settings_inputs = [*files, *weights, max_new_tokens, top_p, temperature, session]
        answering = [
            question.submit(app.send, [question, *settings_inputs], [chatbot, question, session], api_name="send"),
            send.click(app.send, [question, *settings_inputs], [chatbot, question, session], api_name=False),
            regenerate.click(app.regenerate, settings_inputs, [chatbot, session], api_name="regenerate"),
        ]
        stop.click(None, cancels=answering)
        undo.click(app.undo, [session], [chatbot, question, session], api_name="undo")
        clear.click(app.clear, [session], [chatbot, question, session, *files], api_name="clear")
        gr.api(app.chat_api, api_name="chat")

        timer = gr.Timer(1.0)
        timer.tick(lambda: (app.status(), gr.Timer(active=not handle.ready and handle.error is None)), None, [status, timer], api_name=False)
    return demo
