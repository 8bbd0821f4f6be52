"""GPU memory running out, as a user's condition rather than a crash.

A CUDA out-of-memory error says nothing is wrong with the request, only that the GPU is too full
right now (other answers' caches, a long prompt). It becomes `OutOfMemory`, a `UserError` whose
message says so, after the allocator's cached blocks are handed back so the next request has room.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from pandagpt_demo.errors import OutOfMemory

log = logging.getLogger(__name__)

DOES_NOT_FIT = "There is no room on the GPU for {what} right now (it is busy with other answers); please try again in a moment."
CUT_SHORT = "The GPU ran out of memory while answering several people at once: this answer was stopped here so the others could finish."


def free_cached_memory() -> None:
    """Return the CUDA allocator's cached, unused blocks (a no-op without CUDA)."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextmanager
def fits_on_gpu(what: str) -> Iterator[None]:
    """Turn a CUDA out-of-memory error inside the block into `OutOfMemory` naming `what` ("your image file")."""
    try:
        yield
    except torch.cuda.OutOfMemoryError as error:
        log.warning("out of GPU memory for a request's %s: %s", what, error)
        failed = OutOfMemory(DOES_NOT_FIT.format(what=what))
    else:
        return
    free_cached_memory()  # after the except block: the error's traceback no longer holds the step's tensors
    raise failed from None
