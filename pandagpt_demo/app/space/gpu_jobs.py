"""What crosses into and out of a ZeroGPU call (zerogpu.py): plain data only, pickled both ways, every
tensor on the CPU (a GPU tensor sent back cannot be read in the main process).

A call gets one job: an answer (`AnswerJob`), ImageBind's view of some files (`LookJob`), or the
rows of an answer table (`RowsJob`). It yields each vector it had to make (`Encoded`,
`LabelEncoded`), so the session's and the app's caches fill here, then its results: token ids, the
view's outputs (`Looked`), or each row's tokens and end (`RowToken`, `RowEnd`). A user's error is
handed back whole (`Refused`): a call's exception would arrive as its class name alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from pandagpt_demo.app.conversation.embeddings import CacheKey
from pandagpt_demo.app.conversation.session import Mix
from pandagpt_demo.config import SamplingParams
from pandagpt_demo.errors import UserError
from pandagpt_demo.model.conversation import Conversation
from pandagpt_demo.model.modalities import Modality


@dataclass(frozen=True)
class FileToFuse:
    """One file of a job, with its vector (on the CPU) when the session has it already."""

    kind: Modality
    path: Path
    key: CacheKey
    weight: float
    vector: torch.Tensor | None


def kinds_to_encode(files: tuple[FileToFuse, ...]) -> list[Modality]:
    """The kinds of the files a call has to encode (each content once): what its seconds are estimated from."""
    return list({file.key: file.kind for file in files if file.vector is None}.values())


@dataclass(frozen=True)
class AnswerJob:
    """One answer: the conversation (already fitted to the context), its files' weighted sum, the settings."""

    conversation: Conversation
    files: tuple[FileToFuse, ...]
    params: SamplingParams


@dataclass(frozen=True)
class LookJob:
    """ImageBind's view of `files`: their vectors, the vectors of the `labels` the app lacks, and, when
    labels were asked about (`outputs`), ImageBind's own output of each file."""

    files: tuple[FileToFuse, ...]
    labels: tuple[str, ...]
    outputs: bool


@dataclass(frozen=True)
class RowsJob:
    """An answer table: the conversation answered once per mix of the files, all decoded together."""

    conversation: Conversation
    files: tuple[FileToFuse, ...]
    mixes: tuple[Mix, ...]
    params: SamplingParams


@dataclass(frozen=True)
class Encoded:
    """A file's vector the call made, and how long it took."""

    key: CacheKey
    vector: torch.Tensor
    seconds: float


@dataclass(frozen=True)
class LabelEncoded:
    """A label's vector the call made (ImageBind's text tower)."""

    label: str
    vector: torch.Tensor


@dataclass(frozen=True)
class Looked:
    """ImageBind's own output for each file (its audio scale put back), for the labels' probabilities."""

    outputs: torch.Tensor


@dataclass(frozen=True)
class RowToken:
    row: int
    token: int


@dataclass(frozen=True)
class RowEnd:
    """A row ended: at the stop text, EOS or its limit, or (`refused`) with a user's error (the deadline)."""

    row: int
    refused: UserError | None = None


@dataclass(frozen=True)
class Refused:
    """A user's error met in the call, handed back whole to be raised here."""

    error: UserError
