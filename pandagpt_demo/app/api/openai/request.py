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
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path, PurePath

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from pandagpt_demo.app.answering.settings import AnswerSettings
from pandagpt_demo.config import SamplingParams
from pandagpt_demo.errors import BadInput, BadSetting, TooLarge
from pandagpt_demo.model.modalities import Modality

from .body import ReadBody, Spooled
from .protocol import ChatCompletionRequest, FilePart, ImageUrlPart, InputAudioPart, TextPart, UserMessage, VideoUrlPart
from .refusals import HttpError, body_refusal

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
DATA_URL_PREFIX = r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[^,;]*?)*;base64,"
DATA_URL = re.compile(DATA_URL_PREFIX + r"(?P<data>.*)", re.DOTALL)
DATA_URL_HEAD = re.compile(DATA_URL_PREFIX.encode())  # the same prefix, on a spooled string's first bytes
DECODE_CHARS = 4 * 2**18  # base64 characters decoded at a time from a spooled string (1 MiB)


@dataclass(frozen=True)
class Medium:
    """One media part: its kind (None: guess from the file), a file name, and its bytes, the file
    they were decoded into (a large part, spooled to disk as the body arrived) or, for a remote
    URL the server may fetch, the URL."""

    kind: Modality | None
    name: str
    where: str  # its part's path in the request, for a refusal's `param`
    data: bytes | None = None
    url: str | None = None
    path: Path | None = None
    with_sound: bool = False  # a video heard too (its sound track an input of its own)


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


def read_request(
    body: ChatCompletionRequest, settings: AnswerSettings, max_file_bytes: int, max_text_chars: int, read: ReadBody | None = None
) -> CompletionRequest:
    """The validated `body` as PandaGPT's request; files over `max_file_bytes` are `TooLarge`, as is
    text over `max_text_chars` in all (counted before any of it is tokenized). `read`: how the body
    arrived, whose spooled media strings are decoded into files beside them."""
    text = sum(len(_text(m.content)) for m in body.messages)
    if text > max_text_chars:
        raise TooLarge(f"The messages hold {text:,} characters of text; this server takes at most {max_text_chars:,}.", param="messages")
    files = sum(len(m.content) - sum(isinstance(p, TextPart) for p in m.content) for m in body.messages if isinstance(m.content, list))
    if files > settings.max_files:
        raise BadSetting(f"A request takes at most {settings.max_files} files, not {files}.", param="messages")
    media = MediaParts(max_file_bytes, read)
    history, question = _turns(body, media)
    stop = body.stop if isinstance(body.stop, list) else [] if body.stop is None else [body.stop]
    return CompletionRequest(
        model=body.model,
        history=history,
        question=question,
        media=media.found,
        weights={modality.value: weight for modality, weight in (body.weights or {}).items()},
        params=_params(body, settings),
        stop=tuple(stop),
        stream=body.stream,
        include_usage=bool(body.stream_options and body.stream_options.include_usage),
    )


def parse_body(content_type: str | None, data: bytes) -> ChatCompletionRequest:
    """A body's JSON parsed and checked against the schema, as FastAPI would (JSON also without a
    Content-Type, as OpenAI reads it); each refusal an `HttpError` naming the field at fault."""
    if content_type is not None and not _is_json(content_type):
        raise HttpError(400, "The request body must be a JSON object, sent as Content-Type: application/json.", "bad_json")
    try:
        document = json.loads(data)
    except RecursionError as error:
        raise HttpError(400, "The request body nests deeper than this server's JSON parser goes.", "bad_json") from error
    except UnicodeDecodeError as error:
        raise HttpError(400, f"The request body is not valid JSON in UTF-8 ({error}).", "bad_json") from error
    except json.JSONDecodeError as error:
        raise HttpError(400, f"The request body is not valid JSON ({error.msg} at character {error.pos}).", "bad_json") from error
    try:
        return ChatCompletionRequest.model_validate(document)
    except ValidationError as error:
        problems = [{**problem, "loc": ("body", *problem["loc"])} for problem in error.errors(include_url=False)]
        raise body_refusal(RequestValidationError(problems, body=document)) from error


def _is_json(content_type: str) -> bool:
    kind = content_type.split(";")[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


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


def _turns(body: ChatCompletionRequest, media: MediaParts) -> tuple[list[tuple[str, str]], str]:
    """(question, answer) pairs before the last user message, and its text; media parts go to `media`.
    Consecutive messages of one role are one turn, their texts joined once (a line each; a user's
    empty ones left out)."""
    turns: list[tuple[list[str], list[str] | None]] = []  # a question's texts, its answer's texts (None: not answered yet)
    for index, message in enumerate(body.messages):
        where = f"messages[{index}]"
        if message.role == "user":
            media.read(message, where)
            if not turns or turns[-1][1] is not None:
                turns.append(([], None))
            turns[-1][0].append(_text(message.content))
        elif message.role == "assistant":
            if not turns:
                raise BadSetting(f"{where}: an assistant message must follow a user message.", param=where)
            if turns[-1][1] is None:
                turns[-1] = (turns[-1][0], [])
            turns[-1][1].append(_text(message.content))
    last = f"messages[{len(body.messages) - 1}]"
    if not turns or turns[-1][1] is not None:
        raise BadSetting("The last message must be the user's: it holds the question to answer.", param=last)
    joined = [("\n".join(text for text in question if text), None if answer is None else "\n".join(answer)) for question, answer in turns]
    if not joined[-1][0]:
        raise BadInput("The last user message has no text: PandaGPT answers a question about the media.", param=last)
    return [(q, a) for q, a in joined[:-1]], joined[-1][0]


class MediaParts:
    """A request's media parts, read in order into `found`: a short one decoded in memory, a long
    one (spooled to disk as the body arrived) decoded from its file into another, a chunk at a time."""

    def __init__(self, max_file_bytes: int, read: ReadBody | None) -> None:
        self.max_file_bytes = max_file_bytes
        self.body = read
        self.found: list[Medium] = []

    def read(self, message: UserMessage, where: str) -> None:
        """Each media part of a user message, decoded, onto `found`."""
        if isinstance(message.content, str):
            return
        for number_, part in enumerate(message.content):
            here = f"{where}.content[{number_}]"
            if isinstance(part, (ImageUrlPart, VideoUrlPart)):
                modality, url = (Modality.IMAGE, part.image_url.url) if isinstance(part, ImageUrlPart) else (Modality.VIDEO, part.video_url.url)
                medium = self._from_url(url, modality, f"{here}.{part.type}.url")
                self.found.append(replace(medium, with_sound=isinstance(part, VideoUrlPart) and part.video_url.with_sound))
            elif isinstance(part, InputAudioPart):
                data = self._base64(part.input_audio.data, f"{here}.input_audio.data")
                self.found.append(_medium(Modality.AUDIO, f"audio-{len(self.found) + 1}.{part.input_audio.format}", here, data))
            elif isinstance(part, FilePart):
                self.found.append(replace(self._file(part, here), with_sound=part.with_sound))

    def _from_url(self, url: str, modality: Modality, where: str) -> Medium:
        if url.startswith(("http://", "https://")):
            name = PurePath(url.split("?")[0]).name or f"{modality.value}-{len(self.found) + 1}"
            return Medium(modality, name, where, url=url)
        mime, data = self._data_url(url, where)
        return _medium(modality, f"{modality.value}-{len(self.found) + 1}{_suffix(mime, modality, where)}", where, data)

    def _file(self, part: FilePart, where: str) -> Medium:
        raw, here = part.file.file_data or "", f"{where}.file.file_data"
        spooled = self._spooled(raw)
        if raw.startswith("data:") or (spooled is not None and spooled.head.startswith(b"data:")):
            mime, data = self._data_url(raw, here)
        else:
            mime, data = None, self._base64(raw, here)
        name = PurePath(part.file.filename or "").name
        if not PurePath(name).suffix:
            if mime is None:
                message = f"{where}.file.filename must end in the file's suffix (.csv, .npy, .png, ...) when file_data is plain base64."
                raise BadSetting(message, param=f"{where}.file.filename")
            name = f"{name or f'file-{len(self.found) + 1}'}{_suffix(mime, part.modality, here)}"
        return _medium(part.modality, name, where, data)

    def _spooled(self, value: str) -> Spooled | None:
        return self.body.spooled_string(value) if self.body is not None else None

    def _data_url(self, url: str, where: str) -> tuple[str | None, bytes | Path]:
        spooled = self._spooled(url)
        match = DATA_URL_HEAD.match(spooled.head) if spooled is not None else DATA_URL.fullmatch(url)
        if match is None:
            raise BadSetting(f"{where} must be a base64 data URL (data:<type>;base64,...) or an http(s) URL.", param=where)
        if spooled is not None:
            return match["mime"] and match["mime"].decode(), self._decode_spooled(spooled, match.end(), where)
        return match["mime"], self._base64(match["data"], where)

    def _base64(self, value: str, where: str) -> bytes | Path:
        spooled = self._spooled(value)
        if spooled is not None:
            return self._decode_spooled(spooled, 0, where)
        self._check_size(len(value), where)
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as error:
            raise _not_base64(where, error) from error

    def _check_size(self, chars: int, where: str) -> None:
        if chars * 3 // 4 > self.max_file_bytes + 3:
            raise TooLarge(f"{where}: the file is larger than the {self.max_file_bytes / 2**20:g} MB the server accepts.", param=where)

    def _decode_spooled(self, spooled: Spooled, start: int, where: str) -> Path:
        """The base64 from `start` of a spooled string decoded into a file beside it (then the
        string's file is removed): memory for one chunk, whatever the file's size."""
        self._check_size(spooled.size - start, where)
        decoded = spooled.path.with_suffix(".bin")
        try:
            with spooled.path.open("rb") as source, decoded.open("wb") as out:
                source.seek(start)
                while chunk := source.read(DECODE_CHARS):
                    if b"=" in chunk[:-2] or (len(chunk) == DECODE_CHARS and chunk.endswith(b"=") and source.peek(1)):
                        raise binascii.Error("padding before the end")
                    out.write(base64.b64decode(chunk, validate=True))
        except (binascii.Error, ValueError) as error:
            decoded.unlink(missing_ok=True)
            raise _not_base64(where, error) from error
        finally:
            spooled.path.unlink(missing_ok=True)
        return decoded


def _not_base64(where: str, error: Exception) -> BadInput:
    return BadInput(f"{where} is not valid base64 ({error}).", param=where)


def _medium(kind: Modality | None, name: str, where: str, data: bytes | Path) -> Medium:
    return Medium(kind, name, where, path=data) if isinstance(data, Path) else Medium(kind, name, where, data=data)


def _suffix(mime: str | None, kind: Modality | None, where: str) -> str:
    """The file suffix for a media type, so that the loaders read the file as what it is."""
    suffix = MIME_SUFFIXES.get((mime or "").lower())
    if suffix is None or (kind is not None and suffix and suffix not in kind.extensions):
        accepted = ", ".join(kind.extensions) if kind else "see Modality"
        what = kind.value if kind else "a file"
        raise BadInput(f"{where}: media type {mime!r} is not one PandaGPT reads as {what} (accepted: {accepted}).", param=where)
    return suffix
