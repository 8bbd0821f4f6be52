"""A decode step run through torch.compile, falling back to eager for good if compiling or running fails.

A compiler failure (a missing C++ toolchain, an unsupported op in a new transformers) must cost
speed, never an answer: the step that failed is re-run eagerly and every later one stays eager.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

log = logging.getLogger(__name__)


class CompiledStep:
    """Call `fn` compiled with `torch.compile(**options)`, or eagerly when `enabled` is False."""

    def __init__(self, fn: Callable[..., torch.Tensor], enabled: bool, **options: Any) -> None:
        self.fn = fn
        self._compiled = torch.compile(fn, **options) if enabled else None

    @property
    def compiled(self) -> bool:
        """Whether calls go through the compiled function (False if off, or after it failed)."""
        return self._compiled is not None

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self._compiled is not None:
            try:
                return self._compiled(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - see the module docstring
                log.warning("compiled %s failed (%s); running it eagerly from now on", self.fn.__name__, error)
                self._compiled = None
        return self.fn(*args, **kwargs)
