"""The shared batch's KV cache, written in place.

transformers' `DynamicCache` grows by `torch.cat` of every layer's whole keys and values at each
step: at 13B with 16 rows of 700 positions that moves about 15 GB per step beside the 26 GB of
weights (`benchmarks/bench_kv_cache.py` measures it). Here the rows, left-padded to one length,
live in a `StaticCache` with spare room: a step writes one column in place at their common
position, attention reads the spare columns masked out, and the cache is rebuilt (larger, or with
rows added or removed) only when it is full or the batch changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from transformers import StaticCache

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: (rows, heads, length, dim) keys and values


@dataclass(frozen=True)
class CacheLayout:
    """What every batch cache of one decoder shares."""

    config: object  # the LLM's transformers config (layers, heads)
    spare: int  # positions of room made at each rebuild: a rebuild copies the cache, so not every step
    positions: torch.Tensor  # arange on the model's device, longer than any length + spare

    @classmethod
    def for_model(cls, config: object, spare: int, device: torch.device) -> CacheLayout:
        return cls(config, spare, torch.arange(config.max_position_embeddings + spare + 1, device=device))


class BatchCache:
    """The keys and values of the batch's rows, row i starting after `pads[i]` positions of padding.

    Every rebuild (a row joins or leaves, the cache is full) writes the new cache one layer at a
    time from the old one, so the GPU holds the old cache, the new one and a single layer's worth
    of intermediate rows at once: never a third whole copy (joining and evicting are when the
    GPU is fullest).
    """

    def __init__(self, layout: CacheLayout, kv: Iterable[tuple[torch.Tensor, torch.Tensor]], pads: list[int], length: int) -> None:
        """`kv`: each layer's (rows, heads, `length`, dim) keys and values, consumed one layer at a time."""
        self.layout = layout
        self.length = length
        self.pads = pads
        self._pad = torch.tensor(pads, device=layout.positions.device)  # on the device once, not per step
        self.cache = self._filled(kv, self.length + layout.spare)

    @classmethod
    def of(cls, layout: CacheLayout, kv: KV) -> BatchCache:
        """A batch of one row from its (1, heads, length, dim) keys and values per layer."""
        return cls(layout, kv, [0], kv[0][0].shape[2])

    def _filled(self, kv: Iterable[tuple[torch.Tensor, torch.Tensor]], capacity: int) -> StaticCache:
        """A new cache holding `kv` at its first positions (a StaticLayer writes where its own count
        of written positions says, which from here on moves in step with `length`)."""
        cache = StaticCache(config=self.layout.config, max_cache_len=capacity)
        for layer, (keys, values) in zip(cache.layers, kv, strict=True):
            layer.update(keys, values)
        return cache

    @property
    def capacity(self) -> int:
        return self.cache.layers[0].keys.shape[2]

    def kv(self) -> KV:
        """Views of the filled positions."""
        return [(layer.keys[:, :, : self.length], layer.values[:, :, : self.length]) for layer in self.cache.layers]

    def joined(self, kv: KV) -> BatchCache:
        """This batch and one more row (a prefill's keys and values); the shorter side is padded on the left."""
        new_length = kv[0][0].shape[2]
        grow_batch, grow_new = max(new_length - self.length, 0), max(self.length - new_length, 0)
        layers = (  # one layer at a time (see the class docstring)
            (torch.cat([_left_pad(k0, grow_batch), _left_pad(k1, grow_new)]), torch.cat([_left_pad(v0, grow_batch), _left_pad(v1, grow_new)]))
            for (k0, v0), (k1, v1) in zip(self.kv(), kv)
        )
        return BatchCache(self.layout, layers, [p + grow_batch for p in self.pads] + [grow_new], max(self.length, new_length))

    def kept(self, rows: list[int]) -> BatchCache:
        """Only these rows, without the leading columns that are padding in every one of them."""
        index = torch.tensor(rows, device=self.layout.positions.device)
        pads = [self.pads[i] for i in rows]
        cut = min(pads)
        layers = ((k[:, :, cut:].index_select(0, index), v[:, :, cut:].index_select(0, index)) for k, v in self.kv())  # one layer at a time
        return BatchCache(self.layout, layers, [p - cut for p in pads], self.length - cut)

    def next_step(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The next step's attention mask (rows, capacity), positions (rows, 1) and cache position
        (1,), making room first if the cache is full; all computed on the device."""
        if self.length == self.capacity:
            self.cache = self._filled(self.kv(), self.length + self.layout.spare)
        columns = self.layout.positions[: self.capacity][None, :]
        mask = ((columns >= self._pad[:, None]) & (columns <= self.length)).long()
        return mask, (self.length - self._pad)[:, None], self.layout.positions[self.length : self.length + 1]

    def advance(self) -> None:
        """The step ran: its column is filled."""
        self.length += 1


def rewind(cache: StaticCache, position: torch.Tensor) -> None:
    """Make every layer of `cache` write its next column at `position` (a one-element tensor) again.

    Each `StaticLayer` counts the positions it wrote and writes the next one there, whatever
    position the model is given; a step that failed after some layers ran left those layers one
    column ahead. Done in place, so a CUDA graph that captured these counters still sees them.
    """
    for layer in cache.layers:
        if layer.is_initialized:
            layer.cumulative_length.copy_(position.reshape(()))


def _left_pad(tensor: torch.Tensor, amount: int) -> torch.Tensor:
    """Zeros before the sequence axis of a (rows, heads, length, dim) cache tensor."""
    if amount == 0:
        return tensor
    return torch.nn.functional.pad(tensor, (0, 0, amount, 0))
