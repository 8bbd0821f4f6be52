"""A chat-completions request, validated by its schema (protocol.py), read into what PandaGPT
takes: the earlier turns, the question, the media (decoded, not yet written), the sampling settings
and the stop strings.

What the schema cannot say is checked here, each refusal a `UserError` whose `param` is the field's
path: the order of the turns (an assistant answers a user; the last message is the question), the
bounds that are the server's settings, a media part's bytes (base64, its type against its kind,
its size before it is decoded) and the text's length before anything is tokenized. Media of every
user message are summed, as the page sums everything attached in a chat; system and developer
messages are ignored, since PandaGPT's prompt has no place for them.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from pathlib import PurePath

from pandagpt_demo.app.answering.settings import AnswerSettings
from pandagpt_demo.config import SamplingParams
from pandagpt_demo.errors import BadInput, BadSetting, TooLarge
from pandagpt_demo.model.modalities import Modality

from .protocol import ChatCompletionRequest, FilePart, ImageUrlPart, InputAudioPart, TextPart, UserMessage, VideoUrlPart

MIME_SUFFIXES = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/bmp": ".bmp",
    "image/tiff": ".tiff",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/wave": ".wav",
    "audio/mpeg": ".mp3",
    "audio/mp3": ".mp3",
    "audio/flac": ".flac",
    "audio/ogg": ".ogg",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "video/quicktime": ".mov",
    "text/csv": ".csv",
    "application/octet-stream": "",
}
DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[^,;]*?)*;base64,(?P<data>.*)", re.DOTALL)


@dataclass(frozen=True)
class Medium:
    """One media part: its kind (None: guess from the file), a file name, and its bytes or, for a
    remote URL the server may fetch, the URL."""

    kind: Modality | None
    name: str
    where: str  # its part's path in the request, for a refusal's `param`
    data: bytes | None = None
    url: str | None = None


@dataclass(frozen=True)
class CompletionRequest:
    model: str
    history: list[tuple[str, str]]
    question: str
    media: list[Medium]
    weights: dict[str, float | list[float]]  # checked with the files, by api_attachments
    params: SamplingParams
    stop: tuple[str, ...]
    stream: bool
    include_usage: bool


def read_request(body: ChatCompletionRequest, settings: AnswerSettings, max_file_bytes: int, max_text_chars: int) -> CompletionRequest:
    """The validated `body` as PandaGPT's request; files over `max_file_bytes` are `TooLarge`, as is
    text over `max_text_chars` in all (counted before any of it is tokenized)."""
    text = sum(len(_text(m.content)) for m in body.messages)
    if text > max_text_chars:
        raise TooLarge(f"The messages hold {text:,} characters of text; this server takes at most {max_text_chars:,}.", param="messages")
    files = sum(len(m.content) - sum(isinstance(p, TextPart) for p in m.content) for m in body.messages if isinstance(m.content, list))
    if files > settings.max_files:
        raise BadSetting(f"A request takes at most {settings.max_files} files, not {files}.", param="messages")
    media: list[Medium] = []
    history, question = _turns(body, media, max_file_bytes)
    stop = body.stop if isinstance(body.stop, list) else [] if body.stop is None else [body.stop]
    return CompletionRequest(
        model=body.model,
        history=history,
        question=question,
        media=media,
        weights={modality.value: weight for modality, weight in (body.weights or {}).items()},
        params=_params(body, settings),
        stop=tuple(stop),
        stream=body.stream,
        include_usage=bool(body.stream_options and body.stream_options.include_usage),
    )


def _params(body: ChatCompletionRequest, settings: AnswerSettings) -> SamplingParams:
    """The sampling settings, each within the server's limits; absent ones are the page's defaults."""
    field = "max_completion_tokens" if body.max_completion_tokens is not None else "max_tokens"
    tokens = body.max_completion_tokens or body.max_tokens or settings.max_new_tokens
    if tokens > settings.max_new_tokens_limit:
        raise BadSetting(f"{field} must be at most {settings.max_new_tokens_limit}, not {tokens}.", param=field)
    temperature = settings.temperature if body.temperature is None else body.temperature
    if temperature > settings.temperature_limit:
        raise BadSetting(f"temperature must be at most {settings.temperature_limit:g}, not {temperature!r}.", param="temperature")
    return SamplingParams(
        max_new_tokens=tokens,
        top_p=settings.top_p if body.top_p is None else body.top_p,
        temperature=temperature,
        seed=body.seed,
    )


def _text(content: str | list | None) -> str:
    """A message's text: its string, or its text parts joined by line breaks."""
    if isinstance(content, list):
        return "\n".join(part.text for part in content if isinstance(part, TextPart)).strip()
    return (content or "").strip()


def _turns(body: ChatCompletionRequest, media: list[Medium], max_file_bytes: int) -> tuple[list[tuple[str, str]], str]:
    """(question, answer) pairs before the last user message, and its text; media parts go to `media`."""
    turns: list[list] = []  # [question, answer or None]
    for index, message in enumerate(body.messages):
        where = f"messages[{index}]"
        if message.role == "user":
            _media(message, where, media, max_file_bytes)
            text = _text(message.content)
            if turns and turns[-1][1] is None:
                turns[-1][0] = f"{turns[-1][0]}\n{text}".strip()
            else:
                turns.append([text, None])
        elif message.role == "assistant":
            if not turns:
                raise BadSetting(f"{where}: an assistant message must follow a user message.", param=where)
            text = _text(message.content)
            turns[-1][1] = text if turns[-1][1] is None else f"{turns[-1][1]}\n{text}"
    last = f"messages[{len(body.messages) - 1}]"
    if not turns or turns[-1][1] is not None:
        raise BadSetting("The last message must be the user's: it holds the question to answer.", param=last)
    if not turns[-1][0]:
        raise BadInput("The last user message has no text: PandaGPT answers a question about the media.", param=last)
    return [(q, a) for q, a in turns[:-1]], turns[-1][0]


def _media(message: UserMessage, where: str, media: list[Medium], max_file_bytes: int) -> None:
    """Each media part of a user message, decoded, onto `media`."""
    if isinstance(message.content, str):
        return
    for number_, part in enumerate(message.content):
        here = f"{where}.content[{number_}]"
        if isinstance(part, (ImageUrlPart, VideoUrlPart)):
            modality, url = (Modality.IMAGE, part.image_url.url) if isinstance(part, ImageUrlPart) else (Modality.VIDEO, part.video_url.url)
            media.append(_from_url(url, modality, f"{here}.{part.type}.url", len(media), max_file_bytes))
        elif isinstance(part, InputAudioPart):
            data = _base64(part.input_audio.data, f"{here}.input_audio.data", max_file_bytes)
            media.append(Medium(Modality.AUDIO, f"audio-{len(media) + 1}.{part.input_audio.format}", here, data))
        elif isinstance(part, FilePart):
            media.append(_file(part, here, len(media), max_file_bytes))


def _from_url(url: str, modality: Modality, where: str, number_: int, max_file_bytes: int) -> Medium:
    if url.startswith(("http://", "https://")):
        name = PurePath(url.split("?")[0]).name or f"{modality.value}-{number_ + 1}"
        return Medium(modality, name, where, url=url)
    mime, data = _data_url(url, where, max_file_bytes)
    return Medium(modality, f"{modality.value}-{number_ + 1}{_suffix(mime, modality, where)}", where, data)


def _file(part: FilePart, where: str, number_: int, max_file_bytes: int) -> Medium:
    raw, here = part.file.file_data or "", f"{where}.file.file_data"
    if raw.startswith("data:"):
        mime, data = _data_url(raw, here, max_file_bytes)
    else:
        mime, data = None, _base64(raw, here, max_file_bytes)
    name = PurePath(part.file.filename or "").name
    if not PurePath(name).suffix:
        if mime is None:
            message = f"{where}.file.filename must end in the file's suffix (.csv, .npy, .png, ...) when file_data is plain base64."
            raise BadSetting(message, param=f"{where}.file.filename")
        name = f"{name or f'file-{number_ + 1}'}{_suffix(mime, part.modality, here)}"
    return Medium(part.modality, name, where, data)


def _data_url(url: str, where: str, max_file_bytes: int) -> tuple[str | None, bytes]:
    match = DATA_URL.fullmatch(url)
    if match is None:
        raise BadSetting(f"{where} must be a base64 data URL (data:<type>;base64,...) or an http(s) URL.", param=where)
    return match["mime"], _base64(match["data"], where, max_file_bytes)


def _base64(value: str, where: str, max_file_bytes: int) -> bytes:
    if len(value) * 3 // 4 > max_file_bytes + 3:
        raise TooLarge(f"{where}: the file is larger than the {max_file_bytes / 2**20:g} MB the server accepts.", param=where)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise BadInput(f"{where} is not valid base64 ({error}).", param=where) from error


def _suffix(mime: str | None, kind: Modality | None, where: str) -> str:
    """The file suffix for a media type, so that the loaders read the file as what it is."""
    suffix = MIME_SUFFIXES.get((mime or "").lower())
    if suffix is None or (kind is not None and suffix and suffix not in kind.extensions):
        accepted = ", ".join(kind.extensions) if kind else "see Modality"
        what = kind.value if kind else "a file"
        raise BadInput(f"{where}: media type {mime!r} is not one PandaGPT reads as {what} (accepted: {accepted}).", param=where)
    return suffix
