"""What crosses into and out of a ZeroGPU call (zerogpu.py): plain data only, every tensor as bytes.

`spaces` sends a call's arguments and results through multiprocessing's `ForkingPickler`
(spaces/utils.py: `SimpleQueue.put`), where torch's reducers would move each tensor into shared
memory, the sender's own tensor included, holding a file descriptor in each process for as long as
the tensor lives: a session's cached vectors, one descriptor each. So every class here that holds
tensors pickles them as their bytes (`_PlainTensors`) and is rebuilt with ordinary tensors, on the
CPU (a GPU tensor sent back could not be read in the main process anyway).

A call gets one job: an answer (`AnswerJob`), ImageBind's view of some files (`LookJob`), or the
rows of an answer table (`RowsJob`), and the seconds granted for it (`Grant`). It yields each vector
it had to make (`Encoded`, `LabelEncoded`), so the session's and the app's caches fill here, then
its results: token ids, ImageBind's output scales (`Scales`), or each row's tokens and end
(`RowToken`, `RowEnd`). A user's error is handed back whole (`Refused`): a call's exception would
arrive as its class name alone.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from pandagpt_demo.app.conversation.embeddings import CacheKey
from pandagpt_demo.app.conversation.session import Mix
from pandagpt_demo.config import SamplingParams
from pandagpt_demo.errors import UserError
from pandagpt_demo.model.conversation import Conversation
from pandagpt_demo.model.modalities import Modality


class Grant:
    """The seconds a call asked for, and when ZeroGPU granted them, which its deadline counts from.

    ZeroGPU counts the seconds from the grant (spaces' `client.schedule` returning), and a new
    worker's start, which moves the weights to the GPU (`worker_init`), is inside them. `spaces`
    pickles the call's arguments for its worker right after the grant (`gradio_handler`:
    `arg_queue.put`, where its own `warn_duration` clock starts too), so pickling stamps the time.
    Unpickled (no ZeroGPU: the call runs here), the time is the grant's making. `time.monotonic()`
    is Linux's CLOCK_MONOTONIC, one clock for the app and the worker it forked.
    """

    def __init__(self, seconds: int, at: float | None = None) -> None:
        self.seconds = seconds
        self.at = time.monotonic() if at is None else at

    def __reduce__(self) -> tuple[type[Grant], tuple[int, float]]:
        return Grant, (self.seconds, time.monotonic())

    def deadline(self, margin_s: float) -> float:
        """When an answer stops, `margin_s` before the granted seconds are up."""
        return self.at + self.seconds - margin_s


def _tensor(data: bytes, dtype: str, shape: tuple[int, ...]) -> torch.Tensor:
    """A tensor of its bytes, in ordinary memory (the bytearray it is built on)."""
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(getattr(torch, dtype)).reshape(shape)


def _plain(value: object) -> object:
    """A tensor as (its bytes, dtype, shape) rebuilt by `_tensor`; anything else as it is."""
    if not isinstance(value, torch.Tensor):
        return value
    host = value.detach().cpu().contiguous()
    return _Rebuilt(host.reshape(-1).view(torch.uint8).numpy().tobytes(), str(host.dtype).removeprefix("torch."), tuple(host.shape))


@dataclass(frozen=True)
class _Rebuilt:
    """A tensor as it crosses: plain bytes, which ForkingPickler copies like any other."""

    data: bytes
    dtype: str
    shape: tuple[int, ...]


class _PlainTensors:
    """Pickled with each tensor field as its bytes (see the module's docstring), rebuilt with ordinary tensors."""

    def __reduce__(self) -> tuple[object, tuple[type, dict[str, object]]]:
        return _rebuild, (type(self), {field.name: _plain(getattr(self, field.name)) for field in dataclasses.fields(self)})


def _rebuild(cls: type, fields: dict[str, object]) -> object:
    """An instance of `cls` from its pickled fields, each tensor made again of its bytes."""
    return cls(**{name: _tensor(value.data, value.dtype, value.shape) if isinstance(value, _Rebuilt) else value for name, value in fields.items()})


@dataclass(frozen=True)
class FileToFuse(_PlainTensors):
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
    """What ImageBind's view lacks: the vectors of `files` (those the session lacks), of the `labels`
    the app lacks, and ImageBind's output scale of the `kinds` the app lacks (binding.output_scale)."""

    files: tuple[FileToFuse, ...]
    labels: tuple[str, ...]
    kinds: tuple[Modality, ...]


@dataclass(frozen=True)
class RowsJob:
    """An answer table: the conversation answered once per mix of the files, all decoded together."""

    conversation: Conversation
    files: tuple[FileToFuse, ...]
    mixes: tuple[Mix, ...]
    params: SamplingParams


@dataclass(frozen=True)
class Encoded(_PlainTensors):
    """A file's vector the call made, and how long it took."""

    key: CacheKey
    vector: torch.Tensor
    seconds: float


@dataclass(frozen=True)
class LabelEncoded(_PlainTensors):
    """A label's vector the call made (ImageBind's text tower)."""

    label: str
    vector: torch.Tensor


@dataclass(frozen=True)
class Scales:
    """ImageBind's output scale of each kind asked for: its output of a file is the file's vector times it."""

    scales: dict[Modality, float]


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
