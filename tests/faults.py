"""Faults raised from inside a decoder layer at a chosen decode step, compiled or not.

A forward hook on one layer passes its output through `pandagpt_tests::fault`, a custom op: the
compiler treats it as opaque and calls it when the step runs, so the fault happens where a real
one would (a CUDA out-of-memory in the middle of a compiled step), after the layers before it have
written their column of the KV cache. On CPU, `torch.cuda.OutOfMemoryError` is raised as the CUDA
allocator raises it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class _Plan:
    error: type[BaseException] | None = None
    after_steps: int = 0  # decode steps (one position each) to let through first
    seen: int = 0


_PLAN = _Plan()


@torch.library.custom_op("pandagpt_tests::fault", mutates_args=())
def fault(hidden: torch.Tensor) -> torch.Tensor:
    if _PLAN.error is not None and hidden.shape[1] == 1:  # decode steps only, not prefills
        _PLAN.seen += 1
        if _PLAN.seen > _PLAN.after_steps:
            error, _PLAN.error = _PLAN.error, None  # once
            raise error("injected fault inside a decoder layer")
    return hidden.clone()


@fault.register_fake
def _(hidden: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(hidden)


@contextmanager
def fault_hook(llm: nn.Module, layer: int = -1) -> Iterator[None]:
    """Route `llm`'s decoder layer `layer` (default the last) through the fault op while inside."""

    def hook(module: nn.Module, args: tuple, output):
        if isinstance(output, tuple):
            return (fault(output[0]), *output[1:])
        return fault(output)

    handle = llm.model.layers[layer].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
        disarm()


def arm(error: type[BaseException], after_steps: int = 0) -> None:
    """Raise `error` once, in the decode step after `after_steps` more have run."""
    _PLAN.error, _PLAN.after_steps, _PLAN.seen = error, after_steps, 0


def disarm() -> None:
    _PLAN.error = None
