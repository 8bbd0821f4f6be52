"""A decode step run through torch.compile, falling back to eager for good if compiling or running fails.

A compiler failure (a missing C++ toolchain, an unsupported op in a new transformers) must cost
speed, never an answer: the step that failed is re-run eagerly and every later one stays eager.
A step that failed part-way may already have written its column in the KV cache of the layers
before the failure (transformers' static cache counts the positions each layer wrote), so the
owner's `rewind` puts the cache back where the step started before the rerun: otherwise the rerun
writes one column late in those layers and every later token is silently wrong.

Running out of GPU memory is not a compiler failure: it is raised as is, compiling stays on, and
the caller frees memory (the batch evicts rows and rebuilds its cache from the positions every row
finished; the slot's request ends).
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch

log = logging.getLogger(__name__)


class CompiledStep:
    """Call `fn` compiled with `torch.compile(**options)`, or eagerly when `enabled` is False.

    `rewind(*args, **kwargs)`, given the failed call's arguments, undoes what a part-way step wrote
    before it is rerun eagerly.
    """

    def __init__(self, fn: Callable[..., torch.Tensor], enabled: bool, rewind: Callable[..., None], **options: Any) -> None:
        self.fn = fn
        self.rewind = rewind
        self._compiled = torch.compile(fn, **options) if enabled else None

    @property
    def compiled(self) -> bool:
        """Whether calls go through the compiled function (False if off, or after it failed)."""
        return self._compiled is not None

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self._compiled is not None:
            try:
                return self._compiled(*args, **kwargs)
            except torch.cuda.OutOfMemoryError:
                raise  # see the module docstring
            except Exception as error:  # noqa: BLE001 - see the module docstring
                log.warning("compiled %s failed (%s); running it eagerly from now on", self.fn.__name__, error)
                self._compiled = None
                self.rewind(*args, **kwargs)
        return self.fn(*args, **kwargs)


def own_cuda_graph_trees() -> None:
    """Give the calling thread its own CUDA graph trees, as torch means every thread to have.

    Steps compiled with `mode="reduce-overhead"` replay CUDA graphs through Inductor's graph trees,
    kept per thread in a `threading.local` that torch fills only on the thread that imported
    `torch._inductor.cudagraph_trees`; on any other thread the first replay fails an assertion and
    the step falls back to eager for good. Each engine decodes on a thread of its own (a swapped-in
    model gets a new one), so each such thread calls this before its first step.
    """
    from torch._inductor import cudagraph_trees

    if not hasattr(cudagraph_trees.local, "tree_manager_containers"):
        cudagraph_trees.local.tree_manager_containers = {}
        cudagraph_trees.local.tree_manager_locks = defaultdict(threading.Lock)
