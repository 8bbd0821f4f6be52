"""The seam between the app and whatever decodes: submit prompt embeddings, get token ids back.

Everything crossing it is plain data (a (1, L, hidden) tensor, `SamplingParams`, ints), so an
engine in another process or on another machine can implement it. Two live here:
`BatchedDecoder` (continuous batching in a thread of this process, batching.py) and
`InlineEngine` (decoding inside the caller's request, inline.py: ZeroGPU, and the reference path).
`start_engine` (start.py) builds the right one for the model and the machine.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from pandagpt_demo.config import SamplingParams

CLOSED = "The model was closed for a restart; please ask again shortly."  # what a reader hears once an engine is closed


@dataclass(frozen=True)
class EngineStats:
    """A snapshot of an engine's load, for logs, health checks and metrics."""

    waiting: int  # requests queued, not yet decoding
    active: int  # requests decoding now
    tokens: int  # tokens handed to readers since start
    steps: int  # decode steps since start (one step decodes a token for every active request)


@runtime_checkable
class Engine(Protocol):
    """What the app needs from a decoder."""

    def generate(self, embeds: torch.Tensor, params: SamplingParams, cancel: threading.Event | None = None) -> Iterator[int]:
        """Token ids for one prompt as they are decoded (EOS not included); stop iterating, or set
        `cancel`, to cancel. Raises `Busy` when the queue is full, `Unavailable` once closed."""
        ...

    def close(self) -> None:
        """Refuse new requests; every request in flight ends with `Unavailable`."""
        ...

    @property
    def ready(self) -> bool:
        """Whether a request submitted now would be served."""
        ...

    def stats(self) -> EngineStats: ...
