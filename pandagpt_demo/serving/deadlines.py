"""Time limits of one answer: the longest wait for a next token (a stall) and the longest answer.

Whatever the cause (a queue that does not move, a hung step, a slow machine) a reader is never left
waiting forever: its answer ends with `TimedOut`, keeping the text already shown, and the engine
frees its row and serves the others.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from pandagpt_demo.config import SamplingParams
from pandagpt_demo.errors import TimedOut

from .engine import Engine, EngineStats


@dataclass
class AnswerClock:
    """The limits of one answer, started when it was submitted; None means no limit."""

    stall: float | None
    limit: float | None
    started: float = field(default_factory=time.monotonic)
    last: float = field(init=False)

    def __post_init__(self) -> None:
        self.last = self.started

    def wait(self) -> float | None:
        """How long the reader may wait for the next token before the answer has timed out."""
        now = time.monotonic()
        left = [deadline - now for deadline in self._deadlines()]
        return max(min(left), 0.0) if left else None

    def _deadlines(self) -> list[float]:
        return [t for t in (self.last + self.stall if self.stall else None, self.started + self.limit if self.limit else None) if t is not None]

    def token(self) -> None:
        """A token arrived now; raises `TimedOut` if it came too late (an engine that cannot wait with a timeout checks after the fact)."""
        now = time.monotonic()
        if self.stall and now - self.last > self.stall:
            raise self.overdue()
        self.last = now
        if self.limit and now - self.started > self.limit:
            raise self.overdue()

    def overdue(self) -> TimedOut:
        """The error for an answer past one of its limits (whichever came first)."""
        now = time.monotonic()
        if self.limit and now - self.started >= self.limit:
            return TimedOut(f"The answer reached the {self.limit:g} s limit for one answer and was stopped there.")
        return TimedOut(f"No new token came for {self.stall:g} s (the server is overloaded); the answer was stopped there.")


class WithinDeadline:
    """An `Engine` whose answers stop at `deadline` (time.monotonic()) with `TimedOut(message)`, the
    text so far kept: for a call that owns its GPU only until then (ZeroGPU)."""

    def __init__(self, engine: Engine, deadline: float, message: str) -> None:
        self.engine = engine
        self.deadline = deadline
        self.message = message

    def generate(self, embeds: torch.Tensor, params: SamplingParams, cancel: threading.Event | None = None) -> Iterator[int]:
        tokens = self.engine.generate(embeds, params, cancel)
        try:
            for token in tokens:
                yield token
                if time.monotonic() >= self.deadline:
                    raise TimedOut(self.message)
        finally:
            tokens.close()

    def close(self) -> None:
        self.engine.close()

    @property
    def ready(self) -> bool:
        return self.engine.ready

    def stats(self) -> EngineStats:
        return self.engine.stats()
