"""A fault inside a decode step (raised from within a layer, after earlier layers wrote their cache
column) must never change a token: a compiled step that fails is rerun eagerly from the same cache
position, and running out of GPU memory ends rows (eviction) but never corrupts the others."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from pandagpt_demo.config import SamplingParams
from pandagpt_demo.errors import OutOfMemory
from pandagpt_demo.model.generation import generate_tokens
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.serving.batching import BatchedDecoder
from pandagpt_demo.serving.static_decode import StaticSlot
from tests.faults import arm, fault_hook
from tests.serving.test_batching import prompt


def requests(model: PandaGPT) -> list[tuple[torch.Tensor, SamplingParams]]:
    return [
        (prompt(model, "Short?", True), SamplingParams(max_new_tokens=9, temperature=0.0)),
        (prompt(model, "A much longer question about the picture and the sound?", True), SamplingParams(max_new_tokens=17, temperature=0.0)),
        (prompt(model, "Text only, medium length?", False), SamplingParams(max_new_tokens=13, temperature=0.0)),
    ]


def together(decoder: BatchedDecoder, batch: list[tuple[torch.Tensor, SamplingParams]]) -> list[list[int] | BaseException]:
    """Each request's tokens (or the error it ended with, tokens so far dropped), all submitted at once."""
    start = threading.Barrier(len(batch))

    def run(index: int) -> list[int] | BaseException:
        start.wait()
        tokens: list[int] = []
        try:
            for token in decoder.generate(*batch[index]):
                tokens.append(token)
        except OutOfMemory as error:
            error.tokens = tokens
            return error
        return tokens

    with ThreadPoolExecutor(len(batch)) as pool:
        return list(pool.map(run, range(len(batch))))


@pytest.fixture(autouse=True)
def fresh_dynamo():
    import torch._dynamo

    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_a_compiled_batch_step_that_fails_midway_is_rerun_from_the_same_position(tiny_model: PandaGPT) -> None:
    """Falls back to eager for good, and every row's tokens stay those of the request decoded alone."""
    batch = requests(tiny_model)
    alone = [list(generate_tokens(tiny_model.llm, embeds, params, None)) for embeds, params in batch]
    with fault_hook(tiny_model.llm):
        decoder = BatchedDecoder(tiny_model.llm, eos_token_id=None, max_batch=4, max_waiting=8, compile_backend="inductor", batch_spare=3)
        try:
            arm(RuntimeError, after_steps=4)
            results = together(decoder, batch)
        finally:
            decoder.close()
    assert not decoder.batch_step.compiled, "the injected fault was not met"
    assert results == alone


def test_a_compiled_slot_step_that_fails_midway_is_rerun_from_the_same_position(tiny_model: PandaGPT) -> None:
    embeds, params = prompt(tiny_model, "Alone in the slot?", True), SamplingParams(max_new_tokens=20, temperature=0.0)
    alone = list(generate_tokens(tiny_model.llm, embeds, params, None))
    with fault_hook(tiny_model.llm):
        slot = StaticSlot(tiny_model.llm, max_len=256, compile_step=True)
        decoder = BatchedDecoder(tiny_model.llm, eos_token_id=None, max_batch=4, max_waiting=8, slot=slot)
        try:
            arm(RuntimeError, after_steps=6)
            tokens = list(decoder.generate(embeds, params))
        finally:
            decoder.close()
    assert not slot.compiled, "the injected fault was not met"
    assert decoder.steps["slot"] == 19
    assert tokens == alone


def test_out_of_memory_in_a_compiled_step_evicts_without_corrupting_the_rest(tiny_model: PandaGPT) -> None:
    """The newest half of the rows end with OutOfMemory (their text so far kept); the others decode
    on with the tokens they would have had alone; compiling stays on (a full GPU is not a compiler fault)."""
    batch = requests(tiny_model)
    alone = [list(generate_tokens(tiny_model.llm, embeds, params, None)) for embeds, params in batch]
    with fault_hook(tiny_model.llm):
        decoder = BatchedDecoder(tiny_model.llm, eos_token_id=None, max_batch=4, max_waiting=8, compile_backend="inductor", batch_spare=3)
        try:
            arm(torch.cuda.OutOfMemoryError, after_steps=4)
            results = together(decoder, batch)
        finally:
            decoder.close()
    assert decoder.batch_step.compiled, "an out-of-memory error turned compiling off"
    ended = [r for r in results if isinstance(r, OutOfMemory)]
    assert len(ended) == 2, results
    for result, expected in zip(results, alone):
        if isinstance(result, OutOfMemory):
            assert result.tokens == expected[: len(result.tokens)] and len(result.tokens) < len(expected)
        else:
            assert result == expected
