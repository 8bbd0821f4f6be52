"""The Gradio app: one Blocks page whose chat streams PandaGPT's answers, plus the `/chat` API.

Each browser tab (and each `gradio_client.Client`) has its own `ChatSession` in `gr.State`: its
history, uploads and cached embeddings are never seen by anyone else. The model is shared.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from gradio import utils as gradio_utils
from gradio.components.image import ImageData
from gradio.data_classes import FileData

from pandagpt_demo.config import EXAMPLES_FILE, SamplingParams
from pandagpt_demo.errors import BadInput, BadSetting, UserError
from pandagpt_demo.model.modalities import MediaError, Modality
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.serving.engine import Engine

from .runtime import ModelHandle
from .session import ChatSession, Inputs

MODALITIES = tuple(Modality)  # the order of the file inputs everywhere below


log = logging.getLogger(__name__)


def internal_error(error: BaseException) -> str:
    """Log an internal fault with its traceback under a short id; returns what to show the user instead."""
    ref = uuid.uuid4().hex[:8]
    log.error("internal error %s", ref, exc_info=error)
    return f"Internal error (logged as {ref}): not a problem with your files or settings. Please try again."


@dataclass(frozen=True)
class UISettings:
    """Defaults of the sampling sliders (those of the original demo) and the largest values the
    sliders offer; API callers are held to the same ranges."""

    max_new_tokens: int = SamplingParams.max_new_tokens
    top_p: float = SamplingParams.top_p
    temperature: float = SamplingParams.temperature
    max_new_tokens_limit: int = 1024
    temperature_limit: float = 2.0
    weight_limit: float = 2.0


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


def _upload_roots() -> list[Path]:
    """Where a file handed to a handler may live: Gradio's upload folder and the examples."""
    return [Path(gradio_utils.get_upload_folder()).resolve(), EXAMPLES_FILE.parent.resolve()]


def _file_path(modality: Modality, value: str | dict | FileData | None) -> str | None:
    """A component's or an API client's file value as a local path, only if it was uploaded.

    A plain string reaches `/chat` unchecked by Gradio, so without this anyone could have the
    server read (and describe) any file it can open.
    """
    if value is None:
        return None
    if isinstance(value, FileData):
        path = value.path
    elif isinstance(value, dict) and isinstance(value.get("path"), str):
        path = value["path"]
    elif isinstance(value, str):
        path = value
    else:
        raise BadInput(f"The {modality.value} input must be a file (gradio_client.handle_file(...)), not {type(value).__name__}.")
    resolved = Path(path).resolve()
    if not any(resolved.is_relative_to(root) for root in _upload_roots()):
        raise MediaError(modality, path, "it is a path on the server, not an uploaded file; send the file itself (gradio_client.handle_file)")
    return path


def _untouched(image: gr.Image) -> gr.Image:
    """Make `image` hand the uploaded file over as it is. Gradio's Image would open it, rotate it by
    EXIF and convert it to RGB first: instead the app's loader decodes it exactly as the released
    weights expect, and a broken file gets the app's message naming it. (Set on the instance: a
    subclass of a Gradio component writes a .pyi stub beside this module when imported.)"""
    gradio_preprocess = image.preprocess

    def preprocess(payload: ImageData | None) -> str | None:
        if payload is not None and payload.path is not None:
            return payload.path
        return gradio_preprocess(payload)

    image.preprocess = preprocess
    return image


def _number(name: str, value: object, low: float, high: float) -> float:
    """`value` as a float within [low, high], or a BadSetting that says which setting is wrong."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise BadSetting(f"{name} must be a number from {low:g} to {high:g}, not {value!r}.")
    return float(value)


def _api_history(history: object) -> list[tuple[str, str]]:
    """`/chat`'s history: earlier [question, answer] pairs of strings."""
    pairs = history or []
    if not isinstance(pairs, list) or not all(
        isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(text, str) for text in pair) for pair in pairs
    ):
        raise BadSetting("history must be a list of [question, answer] pairs of strings.")
    return [(question, answer) for question, answer in pairs]


def _example_rows() -> list[list[str | None]]:
    """Gallery rows from examples/examples.json: question, then one file (or None) per modality."""
    if not EXAMPLES_FILE.exists():
        return []
    root = EXAMPLES_FILE.parent.parent
    rows = json.loads(EXAMPLES_FILE.read_text())
    return [[row["question"], *[str(root / row[m.value]) if row.get(m.value) else None for m in MODALITIES]] for row in rows]


class ChatApp:
    """Event handlers of the page; every one works on the caller's own session.

    A user's mistake (a bad file, a setting out of range, a full queue) is shown as a warning
    while the chat, the files and the question stay as they were.
    """

    def __init__(self, handle: ModelHandle, settings: UISettings) -> None:
        self.handle = handle
        self.settings = settings

    def _served(self) -> tuple[PandaGPT, Engine]:
        return self.handle.get(timeout=0)

    def status(self) -> str:
        return f"{self.handle.choice.banner}  \n{self.handle.status}"

    def _settings(self, args: tuple) -> tuple[Inputs, SamplingParams]:
        """Unpack the page's shared inputs: six files, six weights, three sliders."""
        n = len(MODALITIES)
        files, weights, (max_new_tokens, top_p, temperature) = args[:n], args[n : 2 * n], args[2 * n : 2 * n + 3]
        inputs = Inputs.of({m: _file_path(m, f) for m, f in zip(MODALITIES, files)}, self._weights(dict(zip(MODALITIES, weights))))
        return inputs, self._params(max_new_tokens, top_p, temperature)

    def _params(self, max_new_tokens: object, top_p: object, temperature: object) -> SamplingParams:
        tokens = _number("max_new_tokens", max_new_tokens, 1, self.settings.max_new_tokens_limit)
        if tokens != int(tokens):
            raise BadSetting(f"max_new_tokens must be a whole number, not {max_new_tokens!r}.")
        return SamplingParams(
            max_new_tokens=int(tokens),
            top_p=_number("top_p", top_p, 0, 1),
            temperature=_number("temperature", temperature, 0, self.settings.temperature_limit),
        )

    def _weights(self, weights: Mapping[Modality, object]) -> dict[Modality, float]:
        limit = self.settings.weight_limit
        return {m: _number(f"The {m.value} weight", w, -limit, limit) for m, w in weights.items()}

    def _api_weights(self, weights: object) -> dict[Modality, float]:
        """`/chat`'s weights: a mapping from modality names to numbers."""
        if weights is None:
            return {}
        names = {m.value for m in MODALITIES}
        if not isinstance(weights, dict) or not set(weights) <= names:
            raise BadSetting(f"weights must map modality names ({', '.join(sorted(names))}) to numbers, not {weights!r}.")
        return self._weights({Modality(k): v for k, v in weights.items()})

    @on_gpu
    def send(self, question: str, *args) -> Iterator[tuple]:
        """Ask a question about the given files; streams (chat, textbox, session).

        The textbox is emptied with the first piece and then left alone, so the user can type the
        next question while this answer streams; if answering fails, the question is put back.
        """
        session: ChatSession = args[-1]
        question = question.strip() if isinstance(question, str) else ""
        if not question:
            gr.Warning("Type a question first.")
            yield session.messages(), "", session
            return
        textbox: str | dict = ""
        try:
            inputs, params = self._settings(args[:-1])
            for _ in session.ask(*self._served(), question, inputs, params, gr.Warning):
                yield session.messages(), textbox, session
                textbox = gr.skip()
        except UserError as error:
            gr.Warning(str(error))
            textbox = question
        except Exception as error:
            yield session.messages(), question, session
            raise gr.Error(internal_error(error)) from error
        yield session.messages(), textbox, session

    @on_gpu
    def regenerate(self, *args) -> Iterator[tuple]:
        """Answer the last question again; if that fails, the previous answer stays."""
        session: ChatSession = args[-1]
        if not session.conversation.turns:
            gr.Warning("Nothing to regenerate yet.")
            yield session.messages(), session
            return
        try:
            inputs, params = self._settings(args[:-1])
            for _ in session.regenerate(*self._served(), inputs, params, gr.Warning):
                yield session.messages(), session
        except UserError as error:
            gr.Warning(str(error))
        except Exception as error:
            yield session.messages(), session
            raise gr.Error(internal_error(error)) from error
        yield session.messages(), session

    def undo(self, session: ChatSession) -> tuple:
        """Remove the last turn (stopping its answer if one is streaming) and put its question back in the textbox."""
        question = session.undo()
        return session.messages(), question or "", session

    def clear(self, session: ChatSession) -> tuple:
        """Forget history, uploads and cached embeddings (stopping an answer being streamed)."""
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
        max_new_tokens: int = SamplingParams.max_new_tokens,
        top_p: float = SamplingParams.top_p,
        temperature: float = SamplingParams.temperature,
        history: list[list[str]] | None = None,
    ) -> Iterator[str]:
        """Ask PandaGPT about the given files; streams the answer text so far.

        `history` holds earlier [question, answer] pairs; `weights` maps modality names
        (image, audio, video, thermal, depth, imu) to multimodal-arithmetic weights (default 1).
        Files must be uploaded with the request (gradio_client.handle_file).
        """
        try:
            if not isinstance(question, str) or not question.strip():
                raise BadSetting("question must be a non-empty string.")
            files = {m: _file_path(m, f) for m, f in zip(MODALITIES, (image, audio, video, thermal, depth, imu))}
            session = ChatSession.from_history(_api_history(history))
            inputs = Inputs.of(files, self._api_weights(weights))
            params = self._params(max_new_tokens, top_p, temperature)
            yield from session.ask(*self._served(), question.strip(), inputs, params, gr.Info)
        except UserError as error:
            raise gr.Error(str(error)) from error
        except Exception as error:
            raise gr.Error(internal_error(error)) from error


def build_demo(handle: ModelHandle, settings: UISettings = UISettings()) -> gr.Blocks:
    app = ChatApp(handle, settings)
    with gr.Blocks(title="PandaGPT") as demo:
        session = gr.State(ChatSession())
        gr.Markdown("# PandaGPT\nGive it an image, a sound, a video, a thermal image, a depth map or an IMU recording — any mix — and ask.")
        status = gr.Markdown(app.status(), elem_id="status")
        with gr.Row():
            with gr.Column(scale=2):
                with gr.Tab("Image"):
                    image = _untouched(gr.Image(type="filepath", label="Image", sources=["upload", "clipboard"], elem_id="image"))
                with gr.Tab("Audio"):
                    audio = gr.Audio(type="filepath", label="Audio", sources=["upload", "microphone"])
                with gr.Tab("Video"):
                    video = gr.Video(label="Video", sources=["upload"])
                with gr.Tab("Thermal"):
                    thermal = _untouched(gr.Image(type="filepath", label="Thermal image", sources=["upload"], elem_id="thermal"))
                with gr.Tab("Depth"):
                    depth = gr.File(
                        label="Depth map (16-bit PNG disparity or .npy metres)", file_types=list(Modality.DEPTH.extensions), elem_id="depth"
                    )
                with gr.Tab("IMU"):
                    imu = gr.File(label="IMU recording (.csv or .npy, 6 channels at 200 Hz)", file_types=list(Modality.IMU.extensions))
                with gr.Accordion("Multimodal arithmetic: weight of each input", open=False):
                    weights = [
                        gr.Slider(-settings.weight_limit, settings.weight_limit, value=1.0, step=0.1, label=m.value.capitalize()) for m in MODALITIES
                    ]
                with gr.Accordion("Sampling", open=True):
                    max_new_tokens = gr.Slider(1, settings.max_new_tokens_limit, value=settings.max_new_tokens, step=1, label="Maximum new tokens")
                    top_p = gr.Slider(0, 1, value=settings.top_p, step=0.01, label="Top P")
                    temperature = gr.Slider(0, settings.temperature_limit, value=settings.temperature, step=0.01, label="Temperature")
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(label="PandaGPT", height=480, elem_id="chatbot")
                with gr.Row():
                    question = gr.Textbox(
                        label="Question", placeholder="Ask about your files, then press Enter", show_label=False, scale=5, elem_id="question"
                    )
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
