"""An OpenAI chat-completions request body read into what PandaGPT takes: the earlier turns, the
question, the media (decoded, not yet written), the sampling settings and the stop strings.

Content parts: `text`; `image_url` (a data URL, or an http(s) URL when the server allows remote
media); `input_audio` (base64 wav or mp3); `video_url` (as vLLM spells it); and the extension for
the other kinds: a `file` part (`file_data` a data URL or base64, `filename`) with a `modality`
field (`image`, `audio`, `video`, `thermal`, `depth`, `imu`; guessed from the file if absent).
The top-level extension field `weights` is `/chat`'s: a number, or a list with one number per
file, for each modality. Media of every user message are summed, as the page sums everything
attached in a chat. System and developer messages are ignored: PandaGPT's prompt has no place
for them. Every refusal is a `UserError` that names the field.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from pathlib import PurePath

from pandagpt_demo.app.answering.settings import AnswerSettings, number
from pandagpt_demo.config import SamplingParams
from pandagpt_demo.errors import BadInput, BadSetting, TooLarge
from pandagpt_demo.model.modalities import Modality

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
AUDIO_FORMATS = ("wav", "mp3")
DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[^,;]*?)*;base64,(?P<data>.*)", re.DOTALL)
MAX_STOPS = 4


@dataclass(frozen=True)
class Medium:
    """One media part: its kind (None: guess from the file), a file name, and its bytes or, for a
    remote URL the server may fetch, the URL."""

    kind: Modality | None
    name: str
    data: bytes | None = None
    url: str | None = None


@dataclass(frozen=True)
class CompletionRequest:
    model: str
    history: list[tuple[str, str]]
    question: str
    media: list[Medium]
    weights: object  # checked with the files, by clients.api_attachments
    params: SamplingParams
    stop: tuple[str, ...]
    stream: bool
    include_usage: bool


def read_request(body: object, settings: AnswerSettings, max_file_bytes: int) -> CompletionRequest:
    """The request `body` (parsed JSON), checked; files over `max_file_bytes` are `TooLarge`."""
    if not isinstance(body, dict):
        raise BadSetting("The request body must be a JSON object.")
    for unsupported in ("tools", "functions"):
        if body.get(unsupported):
            raise BadSetting(f"{unsupported} are not supported: PandaGPT does not call tools.")
    if (body.get("response_format") or {"type": "text"}).get("type") != "text":
        raise BadSetting("response_format: only text answers are supported.")
    if body.get("logprobs"):
        raise BadSetting("logprobs are not supported.")
    if body.get("n", 1) != 1:
        raise BadSetting(f"n must be 1 (one answer per request), not {body.get('n')!r}.")
    model = body.get("model")
    if not isinstance(model, str):
        raise BadSetting("model must be a string (GET /v1/models lists the one served).")
    media: list[Medium] = []
    history, question = _turns(body.get("messages"), media, max_file_bytes)
    stream = body.get("stream", False)
    options = body.get("stream_options") or {}
    if not isinstance(stream, bool) or not isinstance(options, dict):
        raise BadSetting("stream must be true or false, and stream_options an object.")
    return CompletionRequest(
        model=model,
        history=history,
        question=question,
        media=media,
        weights=body.get("weights"),
        params=_params(body, settings),
        stop=_stops(body.get("stop")),
        stream=stream,
        include_usage=bool(options.get("include_usage")),
    )


def _params(body: dict, settings: AnswerSettings) -> SamplingParams:
    given = body.get("max_completion_tokens", body.get("max_tokens"))
    field = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    tokens = settings.max_new_tokens if given is None else number(field, given, 1, settings.max_new_tokens_limit)
    if tokens != int(tokens):
        raise BadSetting(f"{field} must be a whole number, not {given!r}.")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not -(2**63) <= seed < 2**63):
        raise BadSetting(f"seed must be an integer of 64 bits (from -2**63 to 2**63 - 1), not {seed!r}.")
    top_p, temperature = body.get("top_p"), body.get("temperature")
    return SamplingParams(
        max_new_tokens=int(tokens),
        top_p=settings.top_p if top_p is None else number("top_p", top_p, 0, 1),
        temperature=settings.temperature if temperature is None else number("temperature", temperature, 0, settings.temperature_limit),
        seed=seed,
    )


def _stops(stop: object) -> tuple[str, ...]:
    stops = [] if stop is None else [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or len(stops) > MAX_STOPS or not all(isinstance(s, str) and s for s in stops):
        raise BadSetting(f"stop must be a string or a list of at most {MAX_STOPS} non-empty strings.")
    return tuple(stops)


def _turns(messages: object, media: list[Medium], max_file_bytes: int) -> tuple[list[tuple[str, str]], str]:
    """(question, answer) pairs before the last user message, and its text; media parts go to `media`."""
    if not isinstance(messages, list) or not messages:
        raise BadSetting("messages must be a non-empty list.")
    turns: list[list] = []  # [question, answer or None]
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        where = f"messages[{index}]"
        if role in ("system", "developer"):
            continue
        if role == "user":
            text = _user_content(message.get("content"), where, media, max_file_bytes)
            if turns and turns[-1][1] is None:
                turns[-1][0] = f"{turns[-1][0]}\n{text}".strip()
            else:
                turns.append([text, None])
        elif role == "assistant":
            if message.get("tool_calls") or message.get("function_call"):
                raise BadSetting(f"{where}: tool calls are not supported.")
            if not turns:
                raise BadSetting(f"{where}: an assistant message must follow a user message.")
            text = _text_content(message.get("content"), where)
            turns[-1][1] = text if turns[-1][1] is None else f"{turns[-1][1]}\n{text}"
        else:
            raise BadSetting(f"{where}: role must be system, developer, user or assistant, not {role!r}.")
    if not turns or turns[-1][1] is not None:
        raise BadSetting("The last message must be the user's: it holds the question to answer.")
    if not turns[-1][0]:
        raise BadInput("The last user message has no text: PandaGPT answers a question about the media.")
    return [(q, a) for q, a in turns[:-1]], turns[-1][0]


def _text_content(content: object, where: str) -> str:
    if content is None or isinstance(content, str):
        return (content or "").strip()
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content):
        return "\n".join(p["text"] for p in content).strip()
    raise BadSetting(f"{where}: an assistant message's content must be text.")


def _user_content(content: object, where: str, media: list[Medium], max_file_bytes: int) -> str:
    if isinstance(content, str):
        return content.strip()
    if not isinstance(content, list):
        raise BadSetting(f"{where}.content must be a string or a list of content parts.")
    texts = []
    for number_, part in enumerate(content):
        here = f"{where}.content[{number_}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind in ("image_url", "video_url"):
            modality = Modality.IMAGE if kind == "image_url" else Modality.VIDEO
            holder = part.get(kind)
            url = holder.get("url") if isinstance(holder, dict) else None
            media.append(_from_url(url, modality, f"{here}.{kind}.url", len(media), max_file_bytes))
        elif kind == "input_audio":
            media.append(_audio(part.get("input_audio"), here, len(media), max_file_bytes))
        elif kind == "file":
            media.append(_file(part, here, len(media), max_file_bytes))
        else:
            raise BadSetting(f"{here}: unsupported content part {kind!r} (text, image_url, input_audio, video_url or file).")
    return "\n".join(texts).strip()


def _from_url(url: object, modality: Modality, where: str, number_: int, max_file_bytes: int) -> Medium:
    if not isinstance(url, str):
        raise BadSetting(f"{where} must be a string: a data URL or an http(s) URL.")
    if url.startswith(("http://", "https://")):
        name = PurePath(url.split("?")[0]).name or f"{modality.value}-{number_ + 1}"
        return Medium(modality, name, url=url)
    mime, data = _data_url(url, where, max_file_bytes)
    return Medium(modality, f"{modality.value}-{number_ + 1}{_suffix(mime, modality, where)}", data)


def _audio(value: object, where: str, number_: int, max_file_bytes: int) -> Medium:
    if not isinstance(value, dict) or value.get("format") not in AUDIO_FORMATS:
        raise BadSetting(f"{where}.input_audio must have base64 `data` and a `format` of {' or '.join(AUDIO_FORMATS)}.")
    data = _base64(value.get("data"), f"{where}.input_audio.data", max_file_bytes)
    return Medium(Modality.AUDIO, f"audio-{number_ + 1}.{value['format']}", data)


def _file(part: dict, where: str, number_: int, max_file_bytes: int) -> Medium:
    file = part.get("file")
    if not isinstance(file, dict) or not isinstance(file.get("file_data"), str):
        raise BadSetting(f"{where}.file must carry `file_data` (a data URL or base64) and a `filename`; file ids are not supported.")
    modality = part.get("modality")
    if modality is not None and modality not in {m.value for m in Modality}:
        raise BadSetting(f"{where}.modality must be one of {', '.join(m.value for m in Modality)}, not {modality!r}.")
    raw = file["file_data"]
    if raw.startswith("data:"):
        mime, data = _data_url(raw, f"{where}.file.file_data", max_file_bytes)
    else:
        mime, data = None, _base64(raw, f"{where}.file.file_data", max_file_bytes)
    name = PurePath(str(file.get("filename") or "")).name
    kind = Modality(modality) if modality else None
    if not PurePath(name).suffix:
        if mime is None:
            raise BadSetting(f"{where}.file.filename must end in the file's suffix (.csv, .npy, .png, ...) when file_data is plain base64.")
        name = f"{name or f'file-{number_ + 1}'}{_suffix(mime, kind, where)}"
    return Medium(kind, name, data)


def _data_url(url: str, where: str, max_file_bytes: int) -> tuple[str | None, bytes]:
    match = DATA_URL.fullmatch(url)
    if match is None:
        raise BadSetting(f"{where} must be a base64 data URL (data:<type>;base64,...) or an http(s) URL.")
    return match["mime"], _base64(match["data"], where, max_file_bytes)


def _base64(value: object, where: str, max_file_bytes: int) -> bytes:
    if not isinstance(value, str):
        raise BadSetting(f"{where} must be a base64 string.")
    if len(value) * 3 // 4 > max_file_bytes + 3:
        raise TooLarge(f"{where}: the file is larger than the {max_file_bytes / 2**20:g} MB the server accepts.")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise BadInput(f"{where} is not valid base64 ({error}).") from error


def _suffix(mime: str | None, kind: Modality | None, where: str) -> str:
    """The file suffix for a media type, so that the loaders read the file as what it is."""
    suffix = MIME_SUFFIXES.get((mime or "").lower())
    if suffix is None or (kind is not None and suffix and suffix not in kind.extensions):
        accepted = ", ".join(kind.extensions) if kind else "see Modality"
        raise BadInput(f"{where}: media type {mime!r} is not one PandaGPT reads as {kind.value if kind else 'a file'} (accepted: {accepted}).")
    return suffix
