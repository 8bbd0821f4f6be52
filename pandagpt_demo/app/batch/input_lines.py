"""A batch's input: OpenAI's batch file format, one request a line — `custom_id`, `method` (POST),
`url` (`/v1/chat/completions`), `body` — read line by line.

The body is `/v1`'s request, read by `/v1`'s own parser (openai/request.py), with one addition a
user's own files call for: a media part may name a local file instead of carrying it — an
`image_url`'s or `video_url`'s `url`, or a `file` part's `file_data`, that is a path (absolute, or
relative to the input file's folder) or a `file://` URL. Such a file is checked (it exists, it is a
file, within the size limit) and put into the body as a `file` part carrying it in base64 under its
own name, which the parser reads as it reads any, so that everything after is exactly `/v1`'s path.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from pandagpt_demo.errors import BadInput, TooLarge

URL = "/v1/chat/completions"
INLINE = ("data:", "http://", "https://")


@dataclass(frozen=True)
class InputLine:
    """One line of the input: its number, its request's id and body, or why it is not a request."""

    number: int
    custom_id: str | None
    body: dict | None = None
    problem: str | None = None  # the line is not a request this runner can read (an error line, no response)


def read_lines(path: Path) -> Iterator[InputLine]:
    """Every non-empty line of the input file, read as a request or as the reason it is not one."""
    with path.open(encoding="utf-8") as handle:
        for number, text in enumerate(handle, 1):
            if text.strip():
                yield _line(number, text)


def _line(number: int, text: str) -> InputLine:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        return InputLine(number, None, problem=f"line {number} is not JSON ({error.msg} at column {error.colno})")
    if not isinstance(data, dict):
        return InputLine(number, None, problem=f"line {number} is not a JSON object")
    custom_id = data.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return InputLine(number, None, problem=f"line {number} has no custom_id (a non-empty string)")
    if data.get("method") != "POST" or data.get("url") != URL:
        return InputLine(number, custom_id, problem=f"line {number}: this runner takes only POST {URL}, not {data.get('method')} {data.get('url')}")
    if not isinstance(data.get("body"), dict):
        return InputLine(number, custom_id, problem=f"line {number} has no body (a JSON object)")
    return InputLine(number, custom_id, data["body"])


def with_local_files(body: dict, folder: Path, max_file_bytes: int) -> dict:
    """`body` with each media part that names a local file carrying the file instead (see the module
    docstring); a missing or unreadable file is a BadInput naming the part and the path."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return body  # the parser says what is wrong with it
    body = {**body, "messages": [dict(m) if isinstance(m, dict) else m for m in messages]}
    for index, message in enumerate(body["messages"]):
        if not isinstance(message, dict) or not isinstance(message.get("content"), list):
            continue
        message["content"] = [_part(part, folder, max_file_bytes, f"messages[{index}].content[{n}]") for n, part in enumerate(message["content"])]
    return body


def _part(part: object, folder: Path, max_file_bytes: int, where: str) -> object:
    """A part naming a local file as a `file` part carrying it, under the file's own name (an image
    or video URL keeps its kind, and a video its `with_sound`); any other part as it is."""
    if not isinstance(part, dict):
        return part
    kind = part.get("type")
    if kind in ("image_url", "video_url") and isinstance(part.get(kind), dict) and _is_local(part[kind].get("url")):
        path = _local(part[kind]["url"], folder, max_file_bytes, f"{where}.{kind}.url")
        modality = "image" if kind == "image_url" else "video"
        carried = {"type": "file", "file": {"file_data": _base64(path), "filename": path.name}, "modality": modality}
        return carried | ({"with_sound": part[kind]["with_sound"]} if "with_sound" in part[kind] else {})
    if kind == "file" and isinstance(part.get("file"), dict) and _is_local(part["file"].get("file_data")):
        path = _local(part["file"]["file_data"], folder, max_file_bytes, f"{where}.file.file_data")
        return {**part, "file": {**part["file"], "file_data": _base64(path), "filename": part["file"].get("filename") or path.name}}
    return part


def _base64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _is_local(value: object) -> bool:
    return isinstance(value, str) and bool(value) and not value.startswith(INLINE)


def _local(value: str, folder: Path, max_file_bytes: int, where: str) -> Path:
    """The file a part names: a `file://` URL or a path, relative to the input's folder."""
    path = Path(unquote(urlparse(value).path)) if value.startswith("file://") else Path(value).expanduser()
    path = path if path.is_absolute() else folder / path
    if not path.is_file():
        raise BadInput(f"{where}: '{value}' is not a file (looked for {path}).", param=where)
    if path.stat().st_size > max_file_bytes:
        raise TooLarge(f"{where}: '{path.name}' is larger than the {max_file_bytes / 2**20:g} MB a file may be.", param=where)
    return path
