"""The batched decoder under failure, shutdown, cancellation, seeds and edge limits (tiny model, CPU)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
import torch

from pandagpt_demo.config import SamplingParams
from pandagpt_demo.model.generation import generate_tokens
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.serving.batching import BatchedDecoder, DecoderClosed
from pandagpt_demo.serving.static_decode import StaticSlot
from tests.serving.test_batching import prompt

GREEDY = SamplingParams(max_new_tokens=6, temperature=0.0)
ENDLESS = SamplingParams(max_new_tokens=2000, temperature=0.0)  # still decoding whenever the test looks


class Reader:
    """Reads a stream on a daemon thread, so a reader left blocked fails the test instead of hanging the run."""

    def __init__(self, stream: Iterator[int]) -> None:
        self.tokens: list[int] = []
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Iterator[int]) -> None:
        try:
            for token in stream:
                self.tokens.append(token)
        except Exception as error:  # noqa: BLE001 - handed to the test by result()
            self.error = error

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self, timeout: float = 60) -> list[int]:
        self._thread.join(timeout)
        assert self.done, "the reader is still blocked"
        if self.error is not None:
            raise self.error
        return self.tokens


def wait_until(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never came true"
        time.sleep(0.01)


@pytest.fixture
def decoder(tiny_model: PandaGPT) -> Iterator[BatchedDecoder]:
    decoder = BatchedDecoder(tiny_model.llm, eos_token_id=None, max_batch=4, max_waiting=8)
    yield decoder
    decoder.close()


def test_close_ends_every_reader_and_refuses_new_requests(tiny_model: PandaGPT) -> None:
    decoder = BatchedDecoder(tiny_model.llm, eos_token_id=None, max_batch=1, max_waiting=4)
    running = decoder.generate(prompt(tiny_model, "Decoding when it closes", False), ENDLESS)
    assert next(running) >= 0
    queued = Reader(decoder.generate(prompt(tiny_model, "Waiting when it closes", False), GREEDY))
    wait_until(lambda: len(decoder._waiting) == 1)
    decoder.close()
    with pytest.raises(DecoderClosed, match="closed"):
        Reader(running).result()
    with pytest.raises(DecoderClosed, match="closed"):
        queued.result()
    with pytest.raises(DecoderClosed, match="closed"):
        next(decoder.generate(prompt(tiny_model, "After closing", False), GREEDY))


@pytest.mark.parametrize("with_slot", [False, True], ids=["batch", "slot"])
def test_a_failing_prefill_fails_only_its_own_request(tiny_model: PandaGPT, with_slot: bool) -> None:
    """Prompt embeddings of the wrong hidden size fail in the model's prefill: that reader hears of
    it, the request already decoding (in the batch, or moved out of the slot for the newcomer)
    finishes with its own tokens, and the next request is served."""
    slot = StaticSlot(tiny_model.llm, max_len=256, compile_step=False) if with_slot else None
    decoder = BatchedDecoder(tiny_model.llm, eos_token_id=None, max_batch=4, max_waiting=8, slot=slot)
    good = (prompt(tiny_model, "A question that keeps decoding?", True), SamplingParams(max_new_tokens=40, temperature=0.0))
    expected = list(generate_tokens(tiny_model.llm, *good, None))
    malformed = torch.randn(1, 5, tiny_model.llm.config.hidden_size + 1)
    try:
        stream = decoder.generate(*good)
        tokens = [next(stream) for _ in range(3)]
        with pytest.raises(RuntimeError, match="size of tensor"):
            list(decoder.generate(malformed, GREEDY))
        tokens += list(stream)
        after = list(decoder.generate(*good))
    finally:
        decoder.close()
    assert tokens == expected
    assert after == expected


def test_a_failed_batch_step_fails_its_rows_and_the_decoder_serves_on(tiny_model: PandaGPT, decoder: BatchedDecoder) -> None:
    """A batch step that raises (here: the model, once, in a step of two rows) fails the rows that
    share it; later requests are decoded as usual."""
    failed = threading.Event()

    def fail_once_in_a_batch(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids")
        if ids is not None and ids.shape[0] > 1 and not failed.is_set():
            failed.set()
            raise RuntimeError("simulated out of memory in a batch step")

    later = (prompt(tiny_model, "After the failure", False), SamplingParams(max_new_tokens=8, temperature=0.0))
    expected = list(generate_tokens(tiny_model.llm, *later, None))
    handle = tiny_model.llm.register_forward_pre_hook(fail_once_in_a_batch, with_kwargs=True)
    try:
        first = decoder.generate(prompt(tiny_model, "First row", False), ENDLESS)
        assert next(first) >= 0
        with pytest.raises(RuntimeError, match="simulated"):
            list(decoder.generate(prompt(tiny_model, "Second row", True), ENDLESS))
        with pytest.raises(RuntimeError, match="simulated"):
            list(first)
        assert list(decoder.generate(*later)) == expected
    finally:
        handle.remove()


@pytest.mark.parametrize("with_slot", [False, True], ids=["batch", "slot"])
def test_a_seeded_request_draws_the_same_tokens_alone_and_in_company(tiny_model: PandaGPT, with_slot: bool) -> None:
    """Its own generator: the same tokens as `generate_tokens` with that seed, alone or decoded
    together with another seeded, an unseeded and a greedy request."""
    slot = StaticSlot(tiny_model.llm, max_len=256, compile_step=False) if with_slot else None
    decoder = BatchedDecoder(tiny_model.llm, eos_token_id=None, max_batch=4, max_waiting=8, slot=slot)
    embeds = prompt(tiny_model, "Seeded one", True)
    seeded = SamplingParams(max_new_tokens=12, temperature=1.0, top_p=0.9, seed=7)
    expected = list(generate_tokens(tiny_model.llm, embeds, seeded, None))
    company = [
        (prompt(tiny_model, "Another seeded", False), SamplingParams(max_new_tokens=30, temperature=1.0, top_p=1.0, seed=8)),
        (prompt(tiny_model, "Unseeded, a longer question", True), SamplingParams(max_new_tokens=30, temperature=1.3, top_p=1.0)),
        (prompt(tiny_model, "Greedy", False), SamplingParams(max_new_tokens=30, temperature=0.0)),
    ]
    try:
        alone = list(decoder.generate(embeds, seeded))
        streams = [decoder.generate(*request) for request in company]
        for stream in streams:
            next(stream)  # each has joined the batch
        together = list(decoder.generate(embeds, seeded))
        for stream in streams:
            stream.close()
    finally:
        decoder.close()
    assert alone == expected
    assert together == expected
    assert list(generate_tokens(tiny_model.llm, embeds, SamplingParams(max_new_tokens=12, temperature=1.0, top_p=0.9, seed=8), None)) != expected


def test_cancelled_waiting_requests_take_no_place_in_the_queue(tiny_model: PandaGPT) -> None:
    decoder = BatchedDecoder(tiny_model.llm, eos_token_id=None, max_batch=1, max_waiting=1)
    later = (prompt(tiny_model, "Queued after a cancelled one", False), GREEDY)
    expected = list(generate_tokens(tiny_model.llm, *later, None))
    try:
        running = decoder.generate(prompt(tiny_model, "Holds the only row", False), ENDLESS)
        assert next(running) >= 0
        cancel = threading.Event()
        gave_up = Reader(decoder.generate(prompt(tiny_model, "Gives up while waiting", False), GREEDY, cancel))
        wait_until(lambda: len(decoder._waiting) == 1)
        cancel.set()
        accepted = Reader(decoder.generate(*later))
        wait_until(lambda: gave_up.done or accepted.done)  # the cancelled one is dropped, or the new one refused
        running.close()
        assert accepted.result() == expected
        assert gave_up.result() == []
    finally:
        decoder.close()


def test_the_callers_cancel_event_is_watched_never_set(tiny_model: PandaGPT, decoder: BatchedDecoder) -> None:
    embeds = prompt(tiny_model, "One event for several answers", False)
    cancel = threading.Event()
    assert len(list(decoder.generate(embeds, GREEDY, cancel))) == GREEDY.max_new_tokens
    stream = decoder.generate(embeds, ENDLESS, cancel)
    next(stream)
    stream.close()  # the reader leaves: its row is freed, the caller's event untouched
    assert not cancel.is_set()
    assert len(list(decoder.generate(embeds, GREEDY, cancel))) == GREEDY.max_new_tokens  # reused, not pre-cancelled
    stream = decoder.generate(embeds, ENDLESS, cancel)
    next(stream)
    cancel.set()
    assert len(list(stream)) < ENDLESS.max_new_tokens - 1


def test_a_limit_of_zero_tokens_decodes_nothing(tiny_model: PandaGPT, decoder: BatchedDecoder) -> None:
    """Neither path yields a token or runs the model for `max_new_tokens=0`."""
    forwards: list[int] = []
    handle = tiny_model.llm.register_forward_pre_hook(lambda module, args: forwards.append(1))
    embeds = prompt(tiny_model, "Nothing, please", False)
    try:
        for params in (SamplingParams(max_new_tokens=0, temperature=0.0), SamplingParams(max_new_tokens=0, temperature=1.0, seed=3)):
            assert list(decoder.generate(embeds, params)) == []
            assert list(generate_tokens(tiny_model.llm, embeds, params, None)) == []
    finally:
        handle.remove()
    assert forwards == []
    assert decoder.steps == {"slot": 0, "batch": 0}


def test_the_unbatched_path_runs_one_forward_per_token(tiny_model: PandaGPT) -> None:
    """The prefill gives the first token and each later token costs one forward: none is run past the limit."""
    forwards: list[int] = []
    handle = tiny_model.llm.register_forward_pre_hook(lambda module, args: forwards.append(1))
    params = SamplingParams(max_new_tokens=5, temperature=0.0)
    try:
        tokens = list(generate_tokens(tiny_model.llm, prompt(tiny_model, "Count, please", False), params, None))
    finally:
        handle.remove()
    assert len(tokens) == 5 and len(forwards) == 5
