"""An engine that decodes in the caller's own thread, one request at a time per caller.

For ZeroGPU, where the GPU exists only inside a request (a shared decoding thread would touch it
outside one), and as the plain reference the batched engine is compared with. Decoding in the
caller's thread, it can only see a stall after the slow step returns; the GPU running out of
memory ends this answer alone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import torch
from torch import nn

from pandagpt_demo.config import SamplingParams, ServingConfig
from pandagpt_demo.errors import OutOfMemory, Unavailable
from pandagpt_demo.model.generation import generate_tokens
from pandagpt_demo.model.memory import CUT_SHORT, fits_on_gpu, free_cached_memory

from .deadlines import AnswerClock
from .engine import CLOSED, EngineStats

log = logging.getLogger(__name__)


class InlineEngine:
    """`Engine` over `generate_tokens`: the KV-cached loop, run by whoever iterates."""

    def __init__(
        self,
        llm: nn.Module,
        eos_token_id: int | None,
        stall_timeout: float | None = ServingConfig.stall_timeout,
        answer_timeout: float | None = ServingConfig.answer_timeout,
    ) -> None:
        self.llm = llm
        self.eos_token_id = eos_token_id
        self.timeouts = (stall_timeout, answer_timeout)
        self._closed = False
        self._lock = threading.Lock()
        self._active = self._tokens = self._steps = 0

    def generate(self, embeds: torch.Tensor, params: SamplingParams, cancel: threading.Event | None = None) -> Iterator[int]:
        if self._closed:
            raise Unavailable(CLOSED)
        self._count(active=1)
        clock = AnswerClock(*self.timeouts)
        tokens = generate_tokens(self.llm, embeds, params, self.eos_token_id, cancel)
        cut = False
        try:
            with fits_on_gpu("your question and files"):  # the prefill, before the first token
                first = next(tokens, None)
            if first is None:
                return
            for token in _chain(first, tokens):
                clock.token()
                self._count(tokens=1, steps=1)
                yield token
                if self._closed:
                    raise Unavailable(CLOSED)  # as the batched engine: the answer ends with the reason, its text kept
        except torch.cuda.OutOfMemoryError as error:
            log.warning("out of GPU memory while decoding: %s", error)
            cut = True
        finally:
            tokens.close()
            self._count(active=-1)
        if cut:  # outside the except block, whose traceback held the step's tensors
            free_cached_memory()
            raise OutOfMemory(CUT_SHORT)

    def _count(self, active: int = 0, tokens: int = 0, steps: int = 0) -> None:
        with self._lock:
            self._active += active
            self._tokens += tokens
            self._steps += steps

    def close(self) -> None:
        self._closed = True

    @property
    def ready(self) -> bool:
        return not self._closed

    def stats(self) -> EngineStats:
        with self._lock:
            return EngineStats(waiting=0, active=self._active, tokens=self._tokens, steps=self._steps)


def _chain(first: int, rest: Iterator[int]) -> Iterator[int]:
    yield first
    yield from rest
