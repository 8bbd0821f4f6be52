"""A lone request's KV cache in fixed buffers, so its decode step can be compiled into CUDA graphs.

At batch 1 decoding is bound by per-token overhead (hundreds of small kernel launches) long before
memory bandwidth; a static cache gives every step the same shapes and addresses, which lets
`torch.compile(mode="reduce-overhead")` replay the whole step as one CUDA graph. `BatchedDecoder`
moves a request into this slot whenever it decodes alone, and back into the shared batch when
others join. Without CUDA (or if compiling fails) the same step runs eagerly.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import StaticCache

from .batch_cache import KV, rewind
from .compiled import CompiledStep


class StaticSlot:
    """Decode one sequence at a time in a preallocated cache of `max_len` positions."""

    def __init__(self, llm: nn.Module, max_len: int, compile_step: bool) -> None:
        self.llm = llm
        self.max_len = max_len
        self.cache = StaticCache(config=llm.config, max_cache_len=max_len)
        self.length = 0
        self._positions = torch.arange(max_len, device=llm.device)  # step inputs sliced from here: no copy per token
        self._step = CompiledStep(
            self._eager_step, compile_step, rewind=lambda ids, position: rewind(self.cache, position), mode="reduce-overhead", fullgraph=True
        )

    def _eager_step(self, ids: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        output = self.llm(input_ids=ids, cache_position=position, past_key_values=self.cache, use_cache=True)
        return output.logits[:, -1]

    @property
    def compiled(self) -> bool:
        """Whether steps run through torch.compile (False when not asked for, or after it failed)."""
        return self._step.compiled

    def holds(self, length: int) -> bool:
        """Whether a whole sequence of `length` positions (prompt + answer) fits in the slot."""
        return length <= self.max_len

    def prefill(self, embeds: torch.Tensor) -> torch.Tensor:
        """Start a sequence from its (1, L, hidden) prompt; returns the next-token logits (1, vocab)."""
        self.cache.reset()
        output = self.llm(inputs_embeds=embeds, cache_position=self._positions[: embeds.shape[1]], past_key_values=self.cache, use_cache=True)
        self.length = embeds.shape[1]
        return output.logits[:, -1]

    def step(self, token: int, device: torch.device) -> torch.Tensor:
        """Feed one token; returns the next-token logits (1, vocab)."""
        logits = self._step(torch.tensor([[token]], device=device), self._positions[self.length : self.length + 1])
        self.length += 1
        return logits.clone()  # CUDA graph outputs are overwritten by the next replay

    def load(self, layers: KV) -> None:
        """Take over a sequence from the batch: (1, heads, length, dim) keys and values per layer."""
        self.cache.reset()
        for layer, (keys, values) in zip(self.cache.layers, layers):
            layer.update(keys, values)
        self.length = layers[0][0].shape[2]

    def export(self) -> KV:
        """The sequence's keys and values so far, for the batch to take it over: views of the slot's
        buffers (no copy of the whole sequence), valid until the slot's next prefill or load."""
        return [(layer.keys[:, :, : self.length], layer.values[:, :, : self.length]) for layer in self.cache.layers]
