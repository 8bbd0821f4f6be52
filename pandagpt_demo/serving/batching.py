"""Continuous batching: one thread decodes every active request together, each streaming its own tokens.

Decoding is bound by reading the weights once per step, so sixteen sessions decoded together cost
little more than one. A request is prefilled alone, then its KV cache joins the running batch
(left-padded to a common length); it leaves the batch at EOS, at its token limit, when cancelled,
or when its reader stops listening. Each request keeps its own temperature, top-p, limit and seed.

Failures stay as local as they can: a request whose prefill fails hears of it alone, while the
others keep decoding; a failed batch step fails the rows of that batch (they share its cache), and
the decoder goes on serving later requests. The GPU running out of memory in a step is not a
failure of the rows: the newest half of them end (with `OutOfMemory`, their text so far kept), the
cache is rebuilt without them and the rest decode on. A reader that waits too long for a token
ends with `TimedOut` (deadlines.py). After `close`, every reader hears `DecoderClosed`.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import StaticCache

from pandagpt_demo.config import SamplingParams, ServingConfig
from pandagpt_demo.errors import Busy, OutOfMemory, Unavailable
from pandagpt_demo.model.generation import sample_next, sample_rows
from pandagpt_demo.model.memory import CUT_SHORT, fits_on_gpu, free_cached_memory

from .batch_cache import KV, BatchCache, CacheLayout, rewind
from .compiled import CompiledStep, own_cuda_graph_trees
from .deadlines import AnswerClock
from .engine import CLOSED, EngineStats
from .static_decode import StaticSlot

_DONE = object()
_IDS = itertools.count(1)
log = logging.getLogger(__name__)


class QueueFull(Busy):
    """More requests are waiting than the server accepts; the caller should try again later."""


class DecoderClosed(Unavailable):
    """The decoder was closed: a request in flight or waiting will get no more tokens."""


@dataclass(eq=False)
class _Request:
    embeds: torch.Tensor  # (1, L, hidden)
    params: SamplingParams
    cancel: threading.Event | None  # the caller's: watched, never set (the caller may reuse it)
    generator: torch.Generator | None  # its own when it samples with a seed, so company changes no draw
    clock: AnswerClock | None  # its time limits; None: none (the warm-up, which may compile for minutes)
    use_slot: bool = True  # False: decodes in the batch even alone (the warm-up's one-row batch step)
    left: threading.Event = field(default_factory=threading.Event)  # its reader stopped listening
    out: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    produced: int = 0
    last: int = 0
    id: int = field(default_factory=lambda: next(_IDS))

    @property
    def cancelled(self) -> bool:
        return self.left.is_set() or (self.cancel is not None and self.cancel.is_set())


class BatchedDecoder:
    """Serve `generate` calls from many threads with one decode loop over a shared batch."""

    def __init__(
        self,
        llm: nn.Module,
        eos_token_id: int | None,
        max_batch: int = ServingConfig.max_batch,
        max_waiting: int = ServingConfig.max_waiting,
        seed: int = 0,
        slot: StaticSlot | None = None,
        compile_backend: str | None = None,
        batch_spare: int = ServingConfig.batch_spare,
        stall_timeout: float | None = ServingConfig.stall_timeout,
        answer_timeout: float | None = ServingConfig.answer_timeout,
    ) -> None:
        """`slot`, if given, decodes a request that is alone in the batch (see static_decode.py).
        `batch_spare` is the room the batch's cache makes each time it is rebuilt (batch_cache.py).

        `compile_backend` ("inductor" on CUDA) compiles the batch step with dynamic shapes: batch
        size and length vary, so no CUDA graphs, but a few fused kernels per layer instead of the
        eager model's hundreds of small launches and Python between them.
        """
        self.llm = llm
        self.slot = slot
        self.batch_step = CompiledStep(
            self._eager_batch_step,
            compile_backend is not None,
            rewind=lambda ids, mask, positions, cache_position, cache: rewind(cache, cache_position),
            backend=compile_backend or "inductor",
            dynamic=True,
        )
        self.steps = {"slot": 0, "batch": 0}  # decode steps taken each way, for benchmarks and tests
        self.eos_token_id = eos_token_id
        self.max_batch = max_batch
        self.max_waiting = max_waiting
        self.timeouts = (stall_timeout, answer_timeout)
        self._waiting: deque[_Request] = deque()
        self._changed = threading.Condition()  # guards _waiting and _closed
        self._closed = False
        self._active = 0  # rows in the batch, as the decode thread last saw them
        self.tokens = 0  # tokens handed to readers
        self._device = next(llm.parameters()).device
        self._layout = CacheLayout.for_model(llm.config, batch_spare, self._device)
        self._generator = torch.Generator(device=self._device).manual_seed(seed)
        # Only a compiled slot replays CUDA graphs. Inductor's graph trees are imported here, in the
        # constructing thread, never first by the decode thread: a bench run on the CPU crashed
        # (SIGSEGV) in about one start in seven when the decode thread imported them while this one
        # went on with the model.
        self._graph_trees = slot is not None and slot.compiled
        if self._graph_trees:
            own_cuda_graph_trees()
        self._thread = threading.Thread(target=self._run, name="batched-decoder", daemon=True)
        self._thread.start()

    def generate(self, embeds: torch.Tensor, params: SamplingParams, cancel: threading.Event | None = None) -> Iterator[int]:
        """Token ids for one prompt, as they are decoded; stop iterating (or set `cancel`) to cancel.

        Raises QueueFull when too many wait, DecoderClosed once `close` was called, and whatever
        decoding this request raised.
        """
        yield from self._stream(self._submit(embeds, params, cancel, AnswerClock(*self.timeouts)))

    def warm_up(self, prompts: list[torch.Tensor], params: SamplingParams, use_slot: bool = True) -> None:
        """Decode `prompts` queued at once (so they share a batch), discarding the tokens: compiling
        each kind of step happens here instead of in someone's answer. `use_slot=False` keeps a lone
        prompt in the batch, for the one-row batch step (met in traffic when the slot cannot hold a
        request, or while a request joins)."""
        for request in [self._submit(embeds, params, None, None, use_slot, bounded=False) for embeds in prompts]:
            for _ in self._stream(request):
                pass
        self.tokens, self.steps = 0, dict.fromkeys(self.steps, 0)  # a warm-up is not traffic: stats and /metrics start from zero

    def _submit(
        self,
        embeds: torch.Tensor,
        params: SamplingParams,
        cancel: threading.Event | None,
        clock: AnswerClock | None,
        use_slot: bool = True,
        bounded: bool = True,
    ) -> _Request:
        """Queue a request; `bounded`: refused (QueueFull) past `max_waiting`, as every request but a warm-up's is."""
        generator = None
        if params.seed is not None and not params.greedy:
            generator = torch.Generator(device=self._device).manual_seed(params.seed)
        request = _Request(embeds, params, cancel, generator, clock, use_slot)
        with self._changed:
            if self._closed:
                raise DecoderClosed(CLOSED)
            self._drop_cancelled()
            if bounded and len(self._waiting) >= self.max_waiting:
                raise QueueFull(f"{len(self._waiting)} requests are already waiting; please try again in a moment.")
            self._waiting.append(request)
            self._changed.notify()
        log.debug("request %d queued: %d prompt positions, up to %d tokens", request.id, embeds.shape[1], params.max_new_tokens)
        return request

    def _drop_cancelled(self) -> None:
        """End the waiting requests that were cancelled, so they take no place in the queue."""
        for request in [r for r in self._waiting if r.cancelled]:
            self._waiting.remove(request)
            request.out.put(_DONE)

    @staticmethod
    def _stream(request: _Request) -> Iterator[int]:
        clock = request.clock
        try:
            while True:
                try:
                    item = request.out.get(timeout=clock.wait() if clock else None)
                except queue.Empty:
                    log.debug("request %d timed out after %d tokens", request.id, request.produced)
                    raise clock.overdue() from None
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                if clock:
                    clock.token()
                yield item
        finally:
            request.left.set()  # the reader left: free its row at the next step

    @property
    def ready(self) -> bool:
        return not self._closed and self._thread.is_alive()

    def stats(self) -> EngineStats:
        with self._changed:
            waiting = sum(not r.cancelled for r in self._waiting)
        return EngineStats(waiting=waiting, active=self._active, tokens=self.tokens, steps=sum(self.steps.values()))

    def close(self) -> None:
        """Refuse new requests and stop after the current step; every reader left hears DecoderClosed."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._thread.join(timeout=10)

    # --- the decode loop (one thread) ------------------------------------------------------------

    def _run(self) -> None:
        batch = _Batch()
        if self._graph_trees:
            own_cuda_graph_trees()  # this thread replays the slot's CUDA graphs
        try:
            with torch.inference_mode():
                while not self._closed:
                    while len(batch.requests) < self.max_batch and (request := self._next_waiting(idle=not batch.requests)):
                        self._admit(request, batch)
                    self._active = len(batch.requests)
                    if batch.requests:
                        out_of_memory = False
                        try:
                            self._step(batch)
                        except torch.cuda.OutOfMemoryError as error:
                            log.warning("out of GPU memory in a step of %d rows: %s", len(batch.requests), error)
                            out_of_memory = True
                        except Exception as error:  # noqa: BLE001 - the rows share the step's cache: all must hear of it
                            for reader in batch.requests:
                                reader.out.put(error)
                            batch = _Batch()
                        if out_of_memory:  # outside the except block: its traceback held the step's tensors
                            batch = self._evict(batch)
                    self._active = len(batch.requests)
        finally:  # closed, or this thread dies: no reader may wait forever, no request may be accepted
            with self._changed:
                self._closed = True
                readers = [*batch.requests, *self._waiting]
                self._waiting.clear()
            for reader in readers:
                reader.out.put(DecoderClosed(CLOSED))

    def _next_waiting(self, idle: bool) -> _Request | None:
        """The oldest waiting request, or None; never waits while others decode, and idle only until
        a request arrives or the decoder is closed."""
        with self._changed:
            if idle:
                self._changed.wait_for(lambda: self._waiting or self._closed)
            return self._waiting.popleft() if self._waiting and not self._closed else None

    def _admit(self, request: _Request, batch: _Batch) -> None:
        """Prefill one request alone, emit its first token, and let it join the batch.

        A failure here (a malformed prompt, say) is this request's alone: its reader hears of it and
        the batch decodes on (the newcomer's cache joins only once its prefill and first token are done).
        """
        if request.cancelled or request.params.max_new_tokens < 1:
            request.out.put(_DONE)
            return
        try:
            with fits_on_gpu("your question and files"):
                self._prefill(request, batch)
            log.debug("request %d prefilled (%d decoding)", request.id, len(batch.requests))
        except Exception as error:  # noqa: BLE001 - see the docstring
            log.debug("request %d failed in its prefill: %r", request.id, error)
            request.out.put(error)

    def _prefill(self, request: _Request, batch: _Batch) -> None:
        embeds = request.embeds.to(self._device)
        if self.slot is not None and request.use_slot and not batch.requests and self.slot.holds(embeds.shape[1] + request.params.max_new_tokens):
            if self._emit_sampled(request, self.slot.prefill(embeds)):
                batch.requests, batch.in_slot = [request], True
            return
        if batch.in_slot:  # company arrives: the lone request moves from the slot into the batch
            batch.cache, batch.in_slot = BatchCache.of(self._layout, self.slot.export()), False
        output = self.llm(inputs_embeds=embeds, use_cache=True)
        if self._emit_sampled(request, output.logits[:, -1]):
            kv = [(layer.keys, layer.values) for layer in output.past_key_values.layers]
            batch.join(request, kv, self._layout)

    def _step(self, batch: _Batch) -> None:
        """Decode one token for every row, then drop the rows that are done.

        A row alone in the batch (its company finished, or was evicted) first moves to the slot,
        whose step is the fast one, if it fits there."""
        if len(batch.requests) == 1 and not batch.in_slot:
            self._to_slot(batch)
        self.steps["slot" if batch.in_slot else "batch"] += 1
        if batch.in_slot:
            request = batch.requests[0]
            if not self._emit_sampled(request, self.slot.step(request.last, self._device)):
                batch.requests, batch.in_slot = [], False
            return
        ids = torch.tensor([[r.last] for r in batch.requests], device=self._device)
        mask, positions, cache_position = batch.cache.next_step()
        logits = self.batch_step(ids, mask, positions, cache_position, batch.cache.cache)
        tokens = sample_rows(logits, [r.params for r in batch.requests], self._generator, [r.generator for r in batch.requests]).tolist()
        batch.cache.advance()  # only now: a step that failed before here is redone from the same length
        batch.keep([i for i, (r, t) in enumerate(zip(batch.requests, tokens)) if self._emit(r, t)])

    def _to_slot(self, batch: _Batch) -> None:
        """Move the batch's one row into the slot, if there is a slot, the row may use it, and it fits."""
        request = batch.requests[0]
        remaining = request.params.max_new_tokens - request.produced
        if self.slot is not None and request.use_slot and self.slot.holds(batch.cache.length + remaining):
            self.slot.load(batch.cache.kv())
            batch.cache, batch.in_slot = None, True

    def _evict(self, batch: _Batch) -> _Batch:
        """After the GPU ran out of memory in a step: end the newest half of the rows (at least one),
        rebuild the cache without them and hand cached blocks back; the rest decode on. The rebuilt
        cache holds only the positions every row finished, whatever the failed step wrote."""
        free_cached_memory()
        keep = len(batch.requests) // 2 if not batch.in_slot else 0
        for request in batch.requests[keep:]:
            log.warning("request %d ended after %d tokens: out of GPU memory", request.id, request.produced)
            request.out.put(OutOfMemory(CUT_SHORT))
        if keep == 0:
            return _Batch()
        try:
            batch.keep(list(range(keep)))
        except torch.cuda.OutOfMemoryError:
            failed = True
        else:
            failed = False
        if failed:  # no room even to rebuild: end them all
            for request in batch.requests[:keep]:
                request.out.put(OutOfMemory(CUT_SHORT))
            batch = _Batch()
        free_cached_memory()
        return batch

    def _eager_batch_step(
        self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache_position: torch.Tensor, cache: StaticCache
    ) -> torch.Tensor:
        """One token for every row: (B, 1) ids -> (B, vocab) next-token logits, written into `cache` at `cache_position`."""
        output = self.llm(
            input_ids=ids, attention_mask=mask, position_ids=positions, cache_position=cache_position, past_key_values=cache, use_cache=True
        )
        return output.logits[:, -1]

    def _emit_sampled(self, request: _Request, logits: torch.Tensor) -> bool:
        """Sample one request's next token from its (1, vocab) logits and hand it over (see `_emit`)."""
        return self._emit(request, sample_next(logits[0], request.params, request.generator if request.generator is not None else self._generator))

    def _emit(self, request: _Request, token: int) -> bool:
        """Hand `token` to its reader; False when the request is finished (and told so)."""
        if request.cancelled or token == self.eos_token_id:
            log.debug("request %d finished after %d tokens: %s", request.id, request.produced, "cancelled" if request.cancelled else "end of text")
            request.out.put(_DONE)
            return False
        request.out.put(token)
        self.tokens += 1
        request.last = token
        request.produced += 1
        if request.produced >= request.params.max_new_tokens:
            log.debug("request %d finished: its limit of %d tokens", request.id, request.produced)
            request.out.put(_DONE)
            return False
        return True


@dataclass
class _Batch:
    """The requests being decoded and their shared KV cache (see batch_cache.py)."""

    requests: list[_Request] = field(default_factory=list)
    cache: BatchCache | None = None
    in_slot: bool = False  # the lone request decodes in the decoder's StaticSlot instead

    def join(self, request: _Request, kv: KV, layout: CacheLayout) -> None:
        """Add a prefilled request with its prompt's keys and values."""
        self.cache = BatchCache.of(layout, kv) if self.cache is None else self.cache.joined(kv)
        self.requests.append(request)

    def keep(self, rows: list[int]) -> None:
        """Keep only these rows."""
        if len(rows) == len(self.requests):
            return
        self.cache = self.cache.kept(rows) if rows else None  # first: if rebuilding fails, the batch is as it was
        self.requests = [self.requests[i] for i in rows]
