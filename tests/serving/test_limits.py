"""The engines when the GPU runs out of memory or an answer runs out of time (tiny model, CPU).

CUDA's out-of-memory error is raised from inside the model's forward pass (a hook on its second
decoder layer, so the first layer has already written its keys and values), exactly where a real
one would surface.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
import torch

from pandagpt_demo.config import SamplingParams
from pandagpt_demo.errors import OutOfMemory, TimedOut
from pandagpt_demo.model.generation import generate_tokens
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.serving.batching import BatchedDecoder
from pandagpt_demo.serving.deadlines import WithinDeadline
from pandagpt_demo.serving.inline import InlineEngine
from pandagpt_demo.serving.static_decode import StaticSlot
from tests.serving.test_batching import prompt
from tests.serving.test_decoder_robustness import Reader
from tests.waiting import wait_until

LONG = SamplingParams(max_new_tokens=60, temperature=0.0)


class Fault:
    """A hook on the LLM's second layer that runs `action(rows, length)` before it; removed on exit."""

    def __init__(self, model: PandaGPT, action: Callable[[int, int], None]) -> None:
        self.layer = model.llm.model.layers[1]
        self.action = action

    def __enter__(self) -> Fault:
        self.handle = self.layer.register_forward_pre_hook(self._before)
        return self

    def _before(self, module: torch.nn.Module, args: tuple) -> None:
        self.action(*args[0].shape[:2])  # returns nothing: the layer's inputs stay as they are

    def __exit__(self, *exc: object) -> None:
        self.handle.remove()


def oom_once(when: Callable[[int, int], bool]) -> Callable[[int, int], None]:
    fired = threading.Event()

    def action(rows: int, length: int) -> None:
        if when(rows, length) and not fired.is_set():
            fired.set()
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")

    return action


def expected(model: PandaGPT, question: str, params: SamplingParams = LONG) -> list[int]:
    return list(generate_tokens(model.llm, prompt(model, question, False), params, None))


def test_out_of_memory_in_a_batch_step_ends_the_newest_half_and_the_rest_decode_on(tiny_model: PandaGPT) -> None:
    decoder = BatchedDecoder(tiny_model.llm, eos_token_id=None, max_batch=4, max_waiting=8)
    questions = ["The oldest row?", "The second row, a longer one?", "Third?", "The newest row of all?"]
    # The first prefill is held until the other three wait in order, so the loop admits all four
    # before its first step, whose fault then hits a step of four however slow the machine.
    prefilling, queued = threading.Event(), threading.Event()
    out_of_memory = oom_once(lambda rows, length: rows == 4)

    def action(rows: int, length: int) -> None:
        if length > 1 and not queued.is_set():
            prefilling.set()
            queued.wait(30)
        out_of_memory(rows, length)

    try:
        with Fault(tiny_model, action):
            readers = [Reader(decoder.generate(prompt(tiny_model, questions[0], False), LONG))]
            wait_until(prefilling.is_set)
            for i, question in enumerate(questions[1:], start=1):
                readers.append(Reader(decoder.generate(prompt(tiny_model, question, False), LONG)))
                wait_until(lambda: decoder.stats().waiting == i)
            queued.set()
            results = []
            for reader in readers:
                try:
                    results.append(reader.result())
                except OutOfMemory as error:
                    results.append(error)
        after = list(decoder.generate(prompt(tiny_model, questions[0], False), LONG))
    finally:
        queued.set()
        decoder.close()
    for question, result in zip(questions[:2], results[:2]):
        assert result == expected(tiny_model, question), "the oldest rows decode on, from a consistent cache"
    for reader, result in zip(readers[2:], results[2:]):
        assert isinstance(result, OutOfMemory) and "stopped here so the others could finish" in str(result)
        assert reader.tokens and reader.tokens == expected(tiny_model, questions[readers.index(reader)])[: len(reader.tokens)]
    assert after == expected(tiny_model, questions[0]), "and the decoder serves the next request as usual"


@pytest.mark.parametrize("with_slot", [False, True], ids=["batch", "slot"])
def test_out_of_memory_in_a_prefill_fails_that_request_alone(tiny_model: PandaGPT, with_slot: bool) -> None:
    slot = StaticSlot(tiny_model.llm, max_len=256, compile_step=False) if with_slot else None
    decoder = BatchedDecoder(tiny_model.llm, eos_token_id=None, max_batch=4, max_waiting=8, slot=slot)
    try:
        running = decoder.generate(prompt(tiny_model, "A question that keeps decoding?", False), LONG)
        tokens = [next(running) for _ in range(3)]
        with Fault(tiny_model, oom_once(lambda rows, length: length > 1)):  # only a prefill has more than one position
            with pytest.raises(OutOfMemory, match="no room on the GPU for your question and files right now"):
                list(decoder.generate(prompt(tiny_model, "A prompt too big for the GPU now", True), LONG))
        tokens += list(running)
        after = list(decoder.generate(prompt(tiny_model, "Next", False), LONG))
    finally:
        decoder.close()
    assert tokens == expected(tiny_model, "A question that keeps decoding?")
    assert after == expected(tiny_model, "Next")


def test_out_of_memory_of_a_lone_request_in_the_slot_ends_it_and_the_next_is_served(tiny_model: PandaGPT) -> None:
    decoder = BatchedDecoder(tiny_model.llm, eos_token_id=None, max_batch=4, slot=StaticSlot(tiny_model.llm, max_len=256, compile_step=False))
    try:
        stream = decoder.generate(prompt(tiny_model, "Alone in the slot", False), LONG)
        shown = [next(stream) for _ in range(3)]
        with Fault(tiny_model, oom_once(lambda rows, length: length == 1)), pytest.raises(OutOfMemory):
            shown += list(stream)
        after = list(decoder.generate(prompt(tiny_model, "Next", False), LONG))
    finally:
        decoder.close()
    assert shown == expected(tiny_model, "Alone in the slot")[: len(shown)]
    assert after == expected(tiny_model, "Next")


def slow_steps(seconds: float) -> Callable[[int, int], None]:
    return lambda rows, length: time.sleep(seconds)


def test_a_request_that_waits_past_the_stall_timeout_ends_while_the_running_one_finishes(tiny_model: PandaGPT) -> None:
    decoder = BatchedDecoder(tiny_model.llm, eos_token_id=None, max_batch=1, max_waiting=8, stall_timeout=0.5, answer_timeout=None)
    try:
        with Fault(tiny_model, slow_steps(0.03)):  # 60 tokens: about 2 s
            running = Reader(decoder.generate(prompt(tiny_model, "Decoding slowly", False), LONG))
            wait_until(lambda: running.tokens)
            started = time.monotonic()
            with pytest.raises(TimedOut, match=r"No new token came for 0.5 s"):
                list(decoder.generate(prompt(tiny_model, "Waiting behind it", False), LONG))
            waited, still_decoding = time.monotonic() - started, not running.done
            assert running.result() == expected(tiny_model, "Decoding slowly")
    finally:
        decoder.close()
    # Ended by its own stall timeout, while the running answer still held the row (not when the row
    # came free): the event itself, where a window (< 1.5 s) could fail on a loaded machine.
    assert waited >= 0.5 and still_decoding


@pytest.mark.parametrize("engine_kind", ["batched", "inline"])
def test_an_answer_past_its_overall_limit_ends_keeping_its_tokens(tiny_model: PandaGPT, engine_kind: str) -> None:
    make = (
        (lambda **t: BatchedDecoder(tiny_model.llm, None, max_batch=2, **t))
        if engine_kind == "batched"
        else (lambda **t: InlineEngine(tiny_model.llm, None, **t))
    )
    engine = make(stall_timeout=None, answer_timeout=0.4)
    tokens: list[int] = []
    try:
        with Fault(tiny_model, slow_steps(0.03)):
            with pytest.raises(TimedOut, match=r"reached the 0.4 s limit for one answer"):
                for token in engine.generate(prompt(tiny_model, "A long slow answer", False), LONG):
                    tokens.append(token)
        short = SamplingParams(max_new_tokens=8, temperature=0.0)  # well inside the limit, even on a busy machine
        after = list(engine.generate(prompt(tiny_model, "Next", False), short))
    finally:
        engine.close()
    assert 3 <= len(tokens) < 60 and tokens == expected(tiny_model, "A long slow answer")[: len(tokens)]
    assert after == expected(tiny_model, "Next", short)  # the engine serves on after a timeout


def test_the_inline_engine_turns_out_of_memory_into_a_message(tiny_model: PandaGPT) -> None:
    engine = InlineEngine(tiny_model.llm, None)
    with Fault(tiny_model, oom_once(lambda rows, length: length > 1)), pytest.raises(OutOfMemory, match="no room on the GPU"):
        list(engine.generate(prompt(tiny_model, "Too big", False), LONG))
    stream: Iterator[int] = engine.generate(prompt(tiny_model, "Cut mid-answer", False), LONG)
    shown = [next(stream) for _ in range(2)]
    with Fault(tiny_model, oom_once(lambda rows, length: True)), pytest.raises(OutOfMemory, match="stopped here"):
        shown += list(stream)
    assert shown == expected(tiny_model, "Cut mid-answer")[: len(shown)]
    assert engine.stats().active == 0


def test_an_engine_within_a_deadline_stops_there_keeping_its_tokens_and_frees_the_decode(tiny_model: PandaGPT) -> None:
    inline = InlineEngine(tiny_model.llm, eos_token_id=None)
    slow = Fault(tiny_model, lambda rows, length: time.sleep(0.02))
    bounded = WithinDeadline(inline, time.monotonic() + 0.3, "out of GPU time")
    tokens: list[int] = []
    with slow, pytest.raises(TimedOut, match="out of GPU time"):
        for token in bounded.generate(prompt(tiny_model, "Tell me a story.", False), SamplingParams(max_new_tokens=500, temperature=0.0)):
            tokens.append(token)
    assert 0 < len(tokens) < 500
    assert inline.stats().active == 0  # the inner decode was closed, not left running
