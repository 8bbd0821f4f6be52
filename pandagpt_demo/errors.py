"""The package's one error hierarchy: what a user can act on, apart from what is our fault.

- `UserError` and its kinds are shown to the person as they are (a warning in the page, a 4xx in
  an API): a bad file, a setting out of range, a file too large, a question too long, a full queue, the model not
  ready yet or shutting down, an answer cut by a timeout or by GPU memory. The chat and everything
  the user gave stay; an answer cut short keeps the text already shown.
- Every other exception is an internal fault: logged with its traceback under a short id, and
  shown only as "internal error (logged as <id>)" — never as the user's mistake.
- `CheckpointError` (and `UnreadableFile`, `DownloadError` in their modules) are about the weights
  on disk or on the Hub; they carry structured fields, so callers never parse message text.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

log = logging.getLogger(__name__)


class PandaGPTError(Exception):
    """The base of every error this package raises on purpose."""


class UserError(PandaGPTError):
    """Something the user can fix or wait out; its message says what, naming the file or setting.
    `param`, where one field of a request is at fault, is its path (`messages[0].content[1]`), which
    an API returns apart from the message."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class BadInput(UserError, ValueError):
    """A file that cannot be used as the modality it was given as (unreadable, empty, wrong shape, non-finite)."""


class BadSetting(UserError, ValueError):
    """A setting (a slider's value, an API field) outside what it may be."""


class TooLarge(UserError):
    """A file or a request over the size the server accepts (`--max-file-mb`)."""


class PromptTooLong(UserError):
    """The current question alone does not fit in the model's context."""


class Busy(UserError):
    """Too many requests are waiting; try again in a moment."""


class Unavailable(UserError):
    """The model is not ready (still loading, failed to load), the demo is full or is restarting."""


class TimedOut(UserError):
    """An answer got no token for the stall timeout, or ran past its overall limit; the text so far stays."""


class OutOfMemory(UserError):
    """The GPU had no room for this request right now (its prefill or encoding, or its row of a batch step)."""


class CheckpointError(PandaGPTError):
    """A checkpoint file that does not match the model; `missing`, `unexpected`, `mismatched` name its keys."""

    def __init__(
        self,
        message: str,
        path: Path | str | None = None,
        missing: tuple[str, ...] = (),
        unexpected: tuple[str, ...] = (),
        mismatched: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.path = path
        self.missing = missing
        self.unexpected = unexpected
        self.mismatched = mismatched


def first_line(error: object) -> str:
    """The first line of an error's message (its type's name if it has none), for one-line reports."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def internal_error(error: BaseException) -> str:
    """Log an internal fault with its traceback under a short id; returns what to show the user instead."""
    ref = uuid.uuid4().hex[:8]
    log.error("internal error %s", ref, exc_info=error)
    return f"Internal error (logged as {ref}): not a problem with your files or settings. Please try again."
