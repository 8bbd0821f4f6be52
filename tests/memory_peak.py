"""The most memory that tensors made inside a block held at once, counted op by op (any device).

A stand-in for `torch.cuda.max_memory_allocated` that works on the CPU: every op's outputs are
seen through a dispatch mode, and their storages counted until no tensor holds them any more.
Tensors that existed before the block are not counted; views count once, with their storage.
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class PeakNewBytes(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self._before: set[int] = set()
        self._alive: dict[int, tuple[int, list[weakref.ref]]] = {}  # storage address -> (bytes, tensors using it)
        self.peak = 0

    def __enter__(self) -> PeakNewBytes:
        import gc
        import warnings

        with warnings.catch_warnings():  # isinstance on every object touches deprecated module attributes
            warnings.simplefilter("ignore")
            tensors = [o for o in gc.get_objects() if isinstance(o, torch.Tensor)]
        self._before = {t.untyped_storage().data_ptr() for t in tensors if t.device.type != "meta"}
        return super().__enter__()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(tensor, torch.Tensor) and tensor.device.type != "meta":
                address = tensor.untyped_storage().data_ptr()
                if address and address not in self._before:
                    size, refs = self._alive.get(address, (tensor.untyped_storage().nbytes(), []))
                    refs.append(weakref.ref(tensor))
                    self._alive[address] = (size, refs)
        self._alive = {a: (n, [r for r in refs if r() is not None]) for a, (n, refs) in self._alive.items() if any(r() is not None for r in refs)}
        self.peak = max(self.peak, sum(n for n, _ in self._alive.values()))
        return out
