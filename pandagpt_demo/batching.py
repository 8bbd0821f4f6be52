"""Continuous batching: one thread decodes every active request together, each streaming its own tokens.

Decoding is bound by reading the weights once per step, so sixteen sessions decoded together cost
little more than one. A request is prefilled alone, then its KV cache joins the running batch
(left-padded to a common length); it leaves the batch at EOS, at its token limit, when cancelled,
or when its reader stops listening. Each request keeps its own temperature, top-p and limit.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import DynamicCache

from .compiled import CompiledStep
from .config import SamplingParams
from .generation import sample_next, sample_rows
from .static_decode import KV, StaticSlot

_DONE = object()


class QueueFull(RuntimeError):
    """More requests are waiting than the server accepts; the caller should try again later."""


@dataclass(eq=False)
class _Request:
    embeds: torch.Tensor  # (1, L, hidden)
    params: SamplingParams
    cancel: threading.Event
    out: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    produced: int = 0
    last: int = 0


class BatchedDecoder:
    """Serve `generate` calls from many threads with one decode loop over a shared batch."""

    def __init__(
        self,
        llm: nn.Module,
        eos_token_id: int | None,
        max_batch: int = 16,
        max_waiting: int = 64,
        seed: int = 0,
        slot: StaticSlot | None = None,
        compile_backend: str | None = None,
    ) -> None:
        """`slot`, if given, decodes a request that is alone in the batch (see static_decode.py).

        `compile_backend` ("inductor" on CUDA) compiles the batch step with dynamic shapes: batch
        size and length vary, so no CUDA graphs, but a few fused kernels per layer instead of the
        eager model's hundreds of small launches and Python between them.
        """
        self.llm = llm
        self.slot = slot
        self.batch_step = CompiledStep(self._eager_batch_step, compile_backend is not None, backend=compile_backend or "inductor", dynamic=True)
        self.steps = {"slot": 0, "batch": 0}  # decode steps taken each way, for benchmarks and tests
        self.eos_token_id = eos_token_id
        self.max_batch = max_batch
        self.max_waiting = max_waiting
        self._waiting: queue.Queue[_Request] = queue.Queue()
        self._stop = threading.Event()
        self._device = next(llm.parameters()).device
        self._generator = torch.Generator(device=self._device).manual_seed(seed)
        self._thread = threading.Thread(target=self._run, name="batched-decoder", daemon=True)
        self._thread.start()

    def generate(self, embeds: torch.Tensor, params: SamplingParams, cancel: threading.Event | None = None) -> Iterator[int]:
        """Token ids for one prompt, as they are decoded; stop iterating to cancel."""
        yield from self._stream(self._submit(embeds, params, cancel))

    def warm_up(self, prompts: list[torch.Tensor], params: SamplingParams) -> None:
        """Decode `prompts` queued at once (so they share a batch), discarding the tokens: compiling
        each kind of step happens here instead of in someone's answer."""
        for request in [self._submit(embeds, params, None) for embeds in prompts]:
            for _ in self._stream(request):
                pass

    def _submit(self, embeds: torch.Tensor, params: SamplingParams, cancel: threading.Event | None) -> _Request:
        if self._waiting.qsize() >= self.max_waiting:
            raise QueueFull(f"{self._waiting.qsize()} requests are already waiting; please try again in a moment.")
        request = _Request(embeds, params, cancel or threading.Event())
        self._waiting.put(request)
        return request

    @staticmethod
    def _stream(request: _Request) -> Iterator[int]:
        try:
            while (item := request.out.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            request.cancel.set()  # the reader left: free its row at the next step

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    # --- the decode loop (one thread) ------------------------------------------------------------

    def _run(self) -> None:
        batch = _Batch()
        while not self._stop.is_set():
            request = None
            try:
                with torch.inference_mode():
                    while len(batch.requests) < self.max_batch:
                        try:  # never wait while others decode; idle, wake up now and then to see _stop
                            request = self._waiting.get_nowait() if batch.requests else self._waiting.get(timeout=0.1)
                        except queue.Empty:
                            break
                        self._admit(request, batch)
                    if batch.requests:
                        self._step(batch)
            except Exception as error:  # noqa: BLE001 - every reader in flight must hear of it
                for reader in {*batch.requests, request} - {None}:
                    reader.out.put(error)
                batch = _Batch()

    def _admit(self, request: _Request, batch: "_Batch") -> None:
        """Prefill one request alone, emit its first token, and let it join the batch."""
        if request.cancel.is_set():
            request.out.put(_DONE)
            return
        embeds = request.embeds.to(self._device)
        if self.slot is not None and not batch.requests and self.slot.holds(embeds.shape[1] + request.params.max_new_tokens):
            if self._emit_sampled(request, self.slot.prefill(embeds)):
                batch.requests, batch.in_slot = [request], True
            return
        if batch.in_slot:  # company arrives: the lone request moves from the slot into the batch
            batch.cache, batch.pads, batch.in_slot = DynamicCache(self.slot.export()), [0], False
        output = self.llm(inputs_embeds=embeds, use_cache=True)
        if self._emit_sampled(request, output.logits[:, -1]):
            batch.join(request, output.past_key_values)

    def _step(self, batch: "_Batch") -> None:
        """Decode one token for every row, then drop the rows that are done."""
        self.steps["slot" if batch.in_slot else "batch"] += 1
        if batch.in_slot:
            request = batch.requests[0]
            if not self._emit_sampled(request, self.slot.step(request.last, self._device)):
                batch.requests, batch.in_slot = [], False
            return
        ids = torch.tensor([[r.last] for r in batch.requests], device=self._device)
        mask = positions = None
        if any(batch.pads):  # rows of different lengths: hide the padding, count positions per row
            length = batch.cache.get_seq_length()
            pad = torch.tensor(batch.pads, device=self._device)
            mask = (torch.arange(length + 1, device=self._device)[None, :] >= pad[:, None]).long()
            positions = (length - pad)[:, None]
        logits = self.batch_step(ids, mask, positions, batch.cache)
        tokens = sample_rows(logits, [r.params for r in batch.requests], self._generator).tolist()
        batch.keep([i for i, (r, t) in enumerate(zip(batch.requests, tokens)) if self._emit(r, t)])
        if self.slot is not None and len(batch.requests) == 1:  # alone again: back to the fast slot
            request = batch.requests[0]
            remaining = request.params.max_new_tokens - request.produced
            if self.slot.holds(batch.cache.get_seq_length() + remaining):
                self.slot.load(_kv(batch.cache))
                batch.cache, batch.pads, batch.in_slot = None, [], True

    def _eager_batch_step(self, ids: torch.Tensor, mask: torch.Tensor | None, positions: torch.Tensor | None, cache: DynamicCache) -> torch.Tensor:
        """One token for every row: (B, 1) ids -> (B, vocab) next-token logits; `cache` grows by one."""
        output = self.llm(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True)
        return output.logits[:, -1]

    def _emit_sampled(self, request: _Request, logits: torch.Tensor) -> bool:
        """Sample one request's next token from its (1, vocab) logits and hand it over (see `_emit`)."""
        return self._emit(request, sample_next(logits[0], request.params, self._generator))

    def _emit(self, request: _Request, token: int) -> bool:
        """Hand `token` to its reader; False when the request is finished (and told so)."""
        if request.cancel.is_set() or token == self.eos_token_id:
            request.out.put(_DONE)
            return False
        request.out.put(token)
        request.last = token
        request.produced += 1
        if request.produced >= request.params.max_new_tokens:
            request.out.put(_DONE)
            return False
        return True


@dataclass
class _Batch:
    """The requests being decoded and their shared KV cache, each row left-padded to one length."""

    requests: list[_Request] = field(default_factory=list)
    cache: DynamicCache | None = None
    pads: list[int] = field(default_factory=list)
    in_slot: bool = False  # the lone request decodes in the decoder's StaticSlot instead

    def join(self, request: _Request, cache: DynamicCache) -> None:
        """Add a prefilled request; the shorter side (batch or newcomer) is padded on the left."""
        if self.cache is None:
            self.requests, self.cache, self.pads = [request], cache, [0]
            return
        length, new_length = self.cache.get_seq_length(), cache.get_seq_length()
        grow_batch, grow_new = max(new_length - length, 0), max(length - new_length, 0)
        layers = [
            (torch.cat([_left_pad(k0, grow_batch), _left_pad(k1, grow_new)]), torch.cat([_left_pad(v0, grow_batch), _left_pad(v1, grow_new)]))
            for (k0, v0), (k1, v1) in zip(_kv(self.cache), _kv(cache))
        ]
        self.cache = DynamicCache(layers)
        self.requests.append(request)
        self.pads = [p + grow_batch for p in self.pads] + [grow_new]

    def keep(self, rows: list[int]) -> None:
        """Keep only these rows; drop the leading columns that are padding in every remaining row."""
        if len(rows) == len(self.requests):
            return
        if not rows:
            self.requests, self.cache, self.pads = [], None, []
            return
        index = torch.tensor(rows, device=self.cache.layers[0].keys.device)
        self.requests = [self.requests[i] for i in rows]
        self.pads = [self.pads[i] for i in rows]
        cut = min(self.pads)
        self.pads = [p - cut for p in self.pads]
        self.cache = DynamicCache([(k.index_select(0, index)[:, :, cut:], v.index_select(0, index)[:, :, cut:]) for k, v in _kv(self.cache)])


def _kv(cache: DynamicCache) -> KV:
    return [(layer.keys, layer.values) for layer in cache.layers]


def _left_pad(tensor: torch.Tensor, amount: int) -> torch.Tensor:
    """Zeros before the sequence axis of a (batch, heads, seq, dim) cache tensor."""
    if amount == 0:
        return tensor
    return torch.nn.functional.pad(tensor, (0, 0, amount, 0))
