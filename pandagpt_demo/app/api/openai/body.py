"""A `/v1` body read as it arrives, in memory that does not grow with its media.

A chat-completions body is mostly base64: a 200 MB video is a 267 MB JSON string. Held whole,
then decoded to text, parsed and base64-decoded, it would cost several times its size at once, so
one client could take a small server's memory. Here the bytes are scanned as they arrive: every
string that is the value of a media field (`url`, `data`, `file_data`) and longer than
`SPOOL_AFTER` goes to its own file on disk (JSON escapes undone), and the body keeps a marker in
its place. What stays in memory, the JSON around the media, is bounded by its own limit; the whole
body by another, both refused as `TooLarge` (413) the moment they are passed. The scanner only
finds strings' ends; whether the rest is valid JSON is for the parser that reads what it keeps.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pandagpt_demo.errors import BadInput, TooLarge

MEDIA_KEYS = frozenset({b"url", b"data", b"file_data"})  # the fields whose strings are files (protocol.py)
SPOOL_AFTER = 64 * 1024  # a media string longer than this goes to disk
HEAD = 1024  # bytes of a spooled string kept in memory: a data URL's `data:<type>;base64,`
# A string's body up to its closing quote: plain runs and complete escapes. It stops before a
# backslash whose escape is not complete yet (the next chunk finishes it) or is not JSON's.
STRING_BODY = re.compile(rb'(?:[^"\\]+|\\u[0-9a-fA-F]{4}|\\["\\/bfnrt])*')
# One escape of a string's body: a surrogate pair (one character), a single \uXXXX, or a short one.
ESCAPE = re.compile(rb'\\u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})|\\u([0-9a-fA-F]{4})|\\(["\\/bfnrt])')
HIGH_SURROGATE = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}")
SHORT_ESCAPES = {b'"': b'"', b"\\": b"\\", b"/": b"/", b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t"}
SPACE = b" \t\r\n"


@dataclass(frozen=True)
class Spooled:
    """A media string kept on disk: its first bytes, its length and its file."""

    head: bytes
    size: int
    path: Path


@dataclass
class ReadBody:
    """The body as read: its JSON with markers where media strings were, and what each marker stands for."""

    json: bytes
    spooled: dict[str, Spooled] = field(default_factory=dict)

    def spooled_string(self, value: str) -> Spooled | None:
        """The spooled string a value of the parsed body stands for, if it is a marker."""
        return self.spooled.get(value)


class BodyScanner:
    """Fed the body chunk by chunk (`feed`), then `finish`ed; media strings go to files made by `new_file`."""

    def __init__(
        self, limit: int, inline_limit: int, new_file: Callable[[int], Path], room: Callable[[int], None], spool_after: int = SPOOL_AFTER
    ) -> None:
        """`limit`: the body's bytes in all; `inline_limit`: bytes kept in memory; `new_file(n)`: the
        path for the n-th spooled string; `room(n)`: called before n more bytes go to disk (it
        raises if the disk has no room); `spool_after`: a media string's length that sends it to disk."""
        self.limit = limit
        self.spool_after = spool_after
        self.inline_limit = inline_limit
        self.new_file = new_file
        self.room = room
        self.nonce = secrets.token_hex(16)  # markers no client can write on purpose
        self.out = bytearray()  # the JSON kept in memory
        self.carry = b""  # an escape cut by a chunk's end
        self.received = 0
        self.spooled: dict[str, Spooled] = {}
        self.state = "outside"  # or "string" (kept), "media" (kept until long enough), "spool" (to disk)
        self.last_string = b""  # the last string kept, while it may be a key
        self.gap = b""  # what stood between that string and here: a key if it is just a colon
        self.media = bytearray()  # a media string's raw bytes while it is short
        self.head = b""
        self.held = b""  # a spooled string's last escape while it may be the first half of a surrogate pair
        self.spool_size = 0
        self.spool_file = None
        self.spool_path: Path | None = None

    def feed(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > self.limit:
            raise too_large(self.limit)
        data = self.carry + chunk if self.carry else chunk
        self.carry = b""
        pos = 0
        while pos < len(data):
            pos = self._outside(data, pos) if self.state == "outside" else self._in_string(data, pos)
        if len(self.out) > self.inline_limit:
            raise TooLarge(
                f"The request's text and settings (its media aside) are larger than the {self.inline_limit / 2**20:g} MB this server reads."
            )

    def _outside(self, data: bytes, pos: int) -> int:
        quote = data.find(b'"', pos)
        end = len(data) if quote < 0 else quote
        between = data[pos:end]
        self.out += between
        self.gap = (self.gap + between.strip(SPACE))[:2]
        if quote < 0:
            return end
        is_value_of_media = self.gap == b":" and self.last_string in MEDIA_KEYS
        self.last_string, self.gap = b"", b""
        self.state = "media" if is_value_of_media else "string"
        if self.state == "string":
            self.out += b'"'
        return quote + 1

    def _in_string(self, data: bytes, pos: int) -> int:
        match = STRING_BODY.match(data, pos)
        end = match.end()
        self._take(data[pos:end])
        if end == len(data):
            return end
        if data[end : end + 1] == b'"':
            self._close()
            return end + 1
        if len(data) - end < 6:  # an escape the next chunk completes
            self.carry = data[end:]
            return len(data)
        raise BadInput(f"The request body is not valid JSON (a string holds the invalid escape {data[end : end + 2]!r}).")

    def _take(self, part: bytes) -> None:
        """Part of the current string's body (complete escapes only)."""
        if self.state == "string":
            self.out += part
            if len(self.last_string) <= 16:
                self.last_string += part[:17]
        elif self.state == "media":
            self.media += part
            if len(self.media) > self.spool_after:
                self._start_spool()
        else:
            self._spool(part)

    def _close(self) -> None:
        if self.state == "string":
            self.out += b'"'
        elif self.state == "media":
            self.out += b'"' + bytes(self.media) + b'"'
            self.media.clear()
        else:
            self._spool_held()
            self.spool_file.close()
            marker = f"spooled-{self.nonce}-{len(self.spooled)}"
            self.spooled[marker] = Spooled(self.head, self.spool_size, self.spool_path)
            self.spool_file, self.spool_path = None, None
            self.out += json.dumps(marker).encode()
        if self.state != "string":
            self.last_string = b""
        self.state = "outside"

    def _start_spool(self) -> None:
        self.state = "spool"
        self.spool_path = self.new_file(len(self.spooled))
        self.spool_path.parent.mkdir(parents=True, exist_ok=True)
        self.spool_file = self.spool_path.open("wb")
        self.head, self.held, self.spool_size = b"", b"", 0
        raw = bytes(self.media)
        self.media.clear()
        self._spool(raw)

    def _spool(self, raw: bytes) -> None:
        """Complete escapes of a string's body, to its file; a final high surrogate waits for its pair."""
        raw = self.held + raw
        text, self.held = _unescape(raw)
        self._write(text)

    def _spool_held(self) -> None:
        """The held escape, written alone: the string ended without its pair."""
        if self.held:
            self._write(_unescape_all(self.held))
            self.held = b""

    def _write(self, text: bytes) -> None:
        self.room(len(text))
        if len(self.head) < HEAD:
            self.head += text[: HEAD - len(self.head)]
        self.spool_file.write(text)
        self.spool_size += len(text)

    def finish(self) -> ReadBody:
        """The body as read; an unterminated string or escape is left for the parser to refuse."""
        if self.state == "spool":
            self._spool_held()
            self.spool_file.close()
            self.out += b'"'  # unterminated: the parser says where
        elif self.state == "media":
            self.out += b'"' + bytes(self.media)
        self.out += self.carry
        return ReadBody(bytes(self.out), self.spooled)

    def close(self) -> None:
        """Close a file still being written (a body that failed midway); the caller removes the folder."""
        if self.spool_file is not None:
            self.spool_file.close()


def too_large(limit: int) -> TooLarge:
    """The refusal of a body over `limit` bytes, whether by its declared length or by what arrived."""
    return TooLarge(f"The request is larger than the {limit / 2**20:g} MB this server accepts.")


def _unescape(raw: bytes) -> tuple[bytes, bytes]:
    """Complete escapes of a string's body undone, in bytes (a UTF-8 character cut by a chunk's end
    stays whole in the file), and the last escape held back when it is a high surrogate whose pair
    may begin the next chunk."""
    if b"\\" not in raw:
        return raw, b""
    start = len(raw) - 6
    if HIGH_SURROGATE.fullmatch(raw, max(start, 0)) and (start - len(raw[:start].rstrip(b"\\"))) % 2 == 0:
        return _unescape_all(raw[:start]), raw[start:]  # an even run of backslashes before it: a real escape
    return _unescape_all(raw), b""


def _unescape_all(raw: bytes) -> bytes:
    """Every escape of `raw` undone; a lone surrogate kept as Python's `surrogatepass` writes it."""
    return ESCAPE.sub(_character, raw)


def _character(escape: re.Match[bytes]) -> bytes:
    high, low, single, short = escape.groups()
    if high:
        return chr(0x10000 + ((int(high, 16) - 0xD800) << 10) + int(low, 16) - 0xDC00).encode()
    if single:
        return chr(int(single, 16)).encode("utf-8", "surrogatepass")
    return SHORT_ESCAPES[short]
