"""ZeroGPU: the GPU exists only inside `spaces.GPU` calls, each granted the seconds it asked for.

`spaces` runs a call in a forked worker process: the worker has this process's memory as it was
when forked (the model included), the call's arguments and every value it yields are pickled
across. So each answering handler is wrapped per model (a swapped-in model gets new workers,
forked after it was loaded), the app itself never crosses the pipe (only a handler's arguments
do), and each call asks for a duration computed from its request (`estimate_seconds`: the files
to encode and the answer's length). Inside, the answer stops `margin_s` before the grant ends,
with a message, keeping the text so far: ZeroGPU would otherwise kill the call and lose it.
Elsewhere every wrapper returns the handler unchanged.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar

from pandagpt_demo.config import ZeroGpuConfig
from pandagpt_demo.model.modalities import Modality
from pandagpt_demo.serving.deadlines import WithinDeadline
from pandagpt_demo.serving.engine import Engine


def on_zero_gpu(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this is a ZeroGPU Space (as `spaces` itself reads it; app.py repeats it, before any import of torch)."""
    return environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")


def estimate_seconds(config: ZeroGpuConfig, max_new_tokens: float, to_encode: Iterable[Modality]) -> int:
    """Seconds to ask ZeroGPU for: encoding `to_encode`, decoding `max_new_tokens`, the margin; within [min_s, max_s]."""
    per_kind = dict(config.encode_s)
    try:
        tokens = max(float(max_new_tokens), 0.0)
    except (TypeError, ValueError):  # the handler will refuse the setting itself; ask for the least
        tokens = 0.0
    needed = config.margin_s + sum(per_kind[kind.value] for kind in to_encode) + tokens * config.token_s
    return int(min(max(math.ceil(needed), config.min_s), config.max_s))


class GpuCalls:
    """One app's handlers as ZeroGPU calls, and the deadline of the call running in this context."""

    def __init__(self, config: ZeroGpuConfig, generation: Callable[[], int]) -> None:
        """`generation`: the number of the model now served; it changes when another is swapped in."""
        self.config = config
        self.generation = generation
        self._grant: ContextVar[tuple[float, int] | None] = ContextVar(f"zerogpu-grant-{id(self)}", default=None)  # (deadline, seconds)
        self._calls: dict[tuple[str, int], Callable] = {}

    def wrap(self, handler: Callable[..., Iterator], estimate: Callable[..., int]) -> Callable[..., Iterator]:
        """`handler` (a generator function) as a ZeroGPU call asking `estimate(*args, **kwargs)` seconds; unchanged off ZeroGPU."""
        if not on_zero_gpu():
            return handler

        @functools.wraps(handler)
        def call(*args, **kwargs) -> Iterator:
            seconds = estimate(*args, **kwargs)
            yield from self._call(handler)(*args, granted=seconds, **kwargs)

        call.__signature__ = inspect.signature(handler)  # what Gradio reads: the handler's own parameters
        return call

    def _call(self, handler: Callable[..., Iterator]) -> Callable[..., Iterator]:
        key = (handler.__name__, self.generation())
        if key not in self._calls:
            import spaces

            def task(*args, granted: int, **kwargs) -> Iterator:
                # Set and read within the first step of this generator (before its first yield), in the worker.
                self._grant.set((time.monotonic() + granted - self.config.margin_s, granted))
                yield from handler(*args, **kwargs)

            task.__name__ = f"{handler.__name__}_model{key[1]}"
            self._calls[key] = spaces.GPU(task, duration=lambda *args, granted, **kwargs: granted)
        return self._calls[key]

    def bounded(self, engine: Engine) -> Engine:
        """`engine`, stopping its answers at this call's deadline when inside a ZeroGPU call."""
        grant = self._grant.get()
        if grant is None:
            return engine
        deadline, granted = grant
        message = (
            f"This answer used up the GPU time ZeroGPU granted it (about {granted} s) and stops here. "
            "Ask for fewer new tokens, or ask PandaGPT to go on."
        )
        return WithinDeadline(engine, deadline, message)
