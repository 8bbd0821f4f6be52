"""An engine that decodes in the caller's own thread, one request at a time per caller.

For ZeroGPU, where the GPU exists only inside a request (a shared decoding thread would touch it
outside one), and as the plain reference the batched engine is compared with.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import torch
from torch import nn

from pandagpt_demo.config import SamplingParams
from pandagpt_demo.errors import Unavailable
from pandagpt_demo.model.generation import generate_tokens

from .engine import EngineStats


class InlineEngine:
    """`Engine` over `generate_tokens`: the KV-cached loop, run by whoever iterates."""

    def __init__(self, llm: nn.Module, eos_token_id: int | None) -> None:
        self.llm = llm
        self.eos_token_id = eos_token_id
        self._closed = False
        self._lock = threading.Lock()
        self._active = self._tokens = self._steps = 0

    def generate(self, embeds: torch.Tensor, params: SamplingParams, cancel: threading.Event | None = None) -> Iterator[int]:
        if self._closed:
            raise Unavailable("The model is shutting down; please try again in a moment.")
        self._count(active=1)
        try:
            for token in generate_tokens(self.llm, embeds, params, self.eos_token_id, cancel):
                self._count(tokens=1, steps=1)
                yield token
                if self._closed:
                    return
        finally:
            self._count(active=-1)

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
