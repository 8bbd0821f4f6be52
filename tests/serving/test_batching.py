"""Continuous batching on the tiny model: concurrent requests, each with its own settings and stream."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from pandagpt_demo.config import SamplingParams
from pandagpt_demo.model.conversation import Conversation
from pandagpt_demo.model.generation import generate_tokens, sample_rows
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.serving.batching import BatchedDecoder, QueueFull


def prompt(model: PandaGPT, question: str, with_vector: bool) -> torch.Tensor:
    conversation = Conversation()
    conversation.ask(question)
    vector = torch.randn(model.llm.config.hidden_size, generator=torch.Generator().manual_seed(len(question))) if with_vector else None
    return model.prompt_embeds(conversation, vector)


@pytest.fixture
def decoder(tiny_model: PandaGPT):
    # Room for 3 more positions per rebuild: the batch's cache fills and grows within every answer.
    decoder = BatchedDecoder(tiny_model.llm, eos_token_id=None, max_batch=4, max_waiting=8, batch_spare=3)
    yield decoder
    decoder.close()


def test_concurrent_requests_get_their_own_greedy_streams(tiny_model: PandaGPT, decoder: BatchedDecoder) -> None:
    """Different prompt lengths and limits, decoded together, equal each request decoded alone."""
    requests = [
        (prompt(tiny_model, "Short?", True), SamplingParams(max_new_tokens=9, temperature=0.0)),
        (prompt(tiny_model, "A much longer question about the picture and the sound?", True), SamplingParams(max_new_tokens=17, top_p=0.0)),
        (prompt(tiny_model, "Text only, medium length?", False), SamplingParams(max_new_tokens=13, temperature=0.0)),
    ]
    alone = [list(generate_tokens(tiny_model.llm, embeds, params, None)) for embeds, params in requests]
    start = threading.Barrier(len(requests))

    def run(index: int) -> list[int]:
        start.wait()
        return list(decoder.generate(*requests[index]))

    with ThreadPoolExecutor(len(requests)) as pool:
        together = list(pool.map(run, range(len(requests))))
    assert [len(t) for t in together] == [9, 17, 13]
    assert together == alone


def test_the_compiled_batch_step_gives_the_same_streams_without_recompiling(tiny_model: PandaGPT) -> None:
    """Compiled with dynamic shapes, the batch step traces once per kind of batch (one row or
    several, padded or not), never per length or per size of its cache (which grows every 3 steps
    here), and changes no token. Compiled by Inductor, as on CUDA (here it generates C++, see conftest.py)."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    requests = [
        (prompt(tiny_model, "Short?", True), SamplingParams(max_new_tokens=9, temperature=0.0)),
        (prompt(tiny_model, "A much longer question about the picture and the sound?", True), SamplingParams(max_new_tokens=17, top_p=0.0)),
        (prompt(tiny_model, "Text only, medium length?", False), SamplingParams(max_new_tokens=13, temperature=0.0)),
    ]
    alone = [list(generate_tokens(tiny_model.llm, embeds, params, None)) for embeds, params in requests]
    decoder = BatchedDecoder(tiny_model.llm, eos_token_id=None, max_batch=4, max_waiting=8, compile_backend="inductor", batch_spare=3)
    try:
        rounds = []
        for _ in range(2):
            start = threading.Barrier(len(requests))

            def run(index: int) -> list[int]:
                start.wait()
                return list(decoder.generate(*requests[index]))

            with ThreadPoolExecutor(len(requests)) as pool:
                rounds.append(list(pool.map(run, range(len(requests)))))
            graphs = counters["stats"]["unique_graphs"]
    finally:
        decoder.close()
    assert rounds == [alone, alone]
    assert decoder.batch_step.compiled, "the compiled batch step failed and fell back to eager"
    assert not counters["graph_break"]
    assert 1 <= graphs <= 4, f"{graphs} graphs: the step recompiles as lengths change"  # kinds: one row; several, padded or not


def test_sampled_and_greedy_requests_share_a_batch(tiny_model: PandaGPT, decoder: BatchedDecoder) -> None:
    greedy = (prompt(tiny_model, "Greedy one", True), SamplingParams(max_new_tokens=12, temperature=0.0))
    expected = list(generate_tokens(tiny_model.llm, *greedy, None))
    sampled = (prompt(tiny_model, "Sampled one", True), SamplingParams(max_new_tokens=12, temperature=1.5, top_p=1.0))
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda r: list(decoder.generate(*r)), [greedy, sampled]))
    assert results[0] == expected
    assert len(results[1]) == 12


def test_a_reader_that_stops_frees_its_row(tiny_model: PandaGPT, decoder: BatchedDecoder) -> None:
    stream = decoder.generate(prompt(tiny_model, "Go on", False), SamplingParams(max_new_tokens=500, temperature=0.0))
    assert next(stream) >= 0
    stream.close()  # what a cancelled Gradio event does
    short = list(decoder.generate(prompt(tiny_model, "Next", False), SamplingParams(max_new_tokens=5, temperature=0.0)))
    assert len(short) == 5


def test_full_queue_is_refused(tiny_model: PandaGPT) -> None:
    decoder = BatchedDecoder(tiny_model.llm, eos_token_id=None, max_batch=1, max_waiting=0)
    try:
        with pytest.raises(QueueFull, match="try again"):
            next(decoder.generate(prompt(tiny_model, "Hi", False), SamplingParams(max_new_tokens=3)))
    finally:
        decoder.close()


def test_sample_rows_applies_each_rows_settings() -> None:
    logits = torch.tensor([[0.0, 5.0, 4.9], [0.0, 5.0, 4.9], [0.0, 5.0, 4.9]])
    params = [SamplingParams(temperature=0.0), SamplingParams(temperature=1.0, top_p=1.0), SamplingParams(temperature=1.0, top_p=0.01)]
    picks = {tuple(sample_rows(logits, params, torch.Generator().manual_seed(s)).tolist()) for s in range(30)}
    assert {p[0] for p in picks} == {1}
    assert {p[1] for p in picks} == {1, 2}
    assert {p[2] for p in picks} == {1}, "a nucleus of top-p 0.01 holds the top token alone"


@pytest.mark.parametrize("compile_step", [False, True], ids=["eager", "compiled"])
def test_a_lone_request_moves_through_the_static_slot_and_back(tiny_model: PandaGPT, compile_step: bool) -> None:
    """Alone in the static slot, joined by another (into the batch), alone again: same tokens throughout.

    Compiled, the step must trace as one graph with no break and no recompile as positions advance
    or the cache is reloaded (on CUDA that graph is replayed as a CUDA graph; here inductor runs on CPU).
    """
    import torch._dynamo
    from torch._dynamo.utils import counters

    from pandagpt_demo.serving.static_decode import StaticSlot

    torch._dynamo.reset()
    counters.clear()
    slot = StaticSlot(tiny_model.llm, max_len=450, compile_step=compile_step)
    decoder = BatchedDecoder(tiny_model.llm, eos_token_id=None, max_batch=4, max_waiting=8, slot=slot)
    long = (prompt(tiny_model, "The long one, alone first?", True), SamplingParams(max_new_tokens=400, temperature=0.0))
    short = (prompt(tiny_model, "Short", False), SamplingParams(max_new_tokens=6, temperature=0.0))
    expected = [list(generate_tokens(tiny_model.llm, embeds, params, None)) for embeds, params in (long, short)]
    try:
        first = decoder.generate(*long)
        tokens = [next(first) for _ in range(5)]  # decoding alone, in the slot
        assert slot.length > 0
        second = list(decoder.generate(*short))  # joins: both move into the batch, then the short one leaves
        tokens += list(first)
    finally:
        decoder.close()
    # The short one: 1 token from its prefill, 5 decoded together with the long one; then the long
    # one is alone again and goes back to the slot for the rest of its 400 tokens.
    assert decoder.steps["batch"] == 5
    assert decoder.steps["slot"] == 400 - 1 - 5
    assert second == expected[1]
    assert tokens == expected[0]
    assert slot.compiled == compile_step, "the compiled step failed and fell back to eager"
    if compile_step:
        assert counters["stats"]["unique_graphs"] == 1
        assert not counters["graph_break"]


def test_after_the_warm_up_real_traffic_compiles_nothing(tiny_model: PandaGPT) -> None:
    """`warm_up` (run by `start_engine` on CUDA) meets every kind of step, so no user waits for a compile:
    a lone request in the slot, joins and leaves, a newcomer done at its first token (the lone one
    exported into a batch of one row), a request too long for the slot decoding alone in the batch,
    and an eviction that leaves one row."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from pandagpt_demo.errors import OutOfMemory
    from pandagpt_demo.serving.start import warm_up
    from pandagpt_demo.serving.static_decode import StaticSlot
    from tests.faults import arm, fault_hook

    torch._dynamo.reset()
    counters.clear()
    greedy = lambda tokens: SamplingParams(max_new_tokens=tokens, temperature=0.0)  # noqa: E731
    with fault_hook(tiny_model.llm):  # compiled into every step; raises only when armed
        slot = StaticSlot(tiny_model.llm, max_len=256, compile_step=True)
        decoder = BatchedDecoder(tiny_model.llm, eos_token_id=None, max_batch=4, max_waiting=8, slot=slot, compile_backend="inductor")
        try:
            warm_up(tiny_model, decoder)
            warmed = counters["stats"]["unique_graphs"]
            requests = [
                (prompt(tiny_model, "First, a question alone for a while?", True), greedy(30)),
                (prompt(tiny_model, "Then another", False), greedy(12)),
                (prompt(tiny_model, "And a third, longer than the others by far, with a picture?", True), greedy(8)),
            ]
            streams = [decoder.generate(*request) for request in requests]
            first = [next(streams[0]) for _ in range(5)]
            with ThreadPoolExecutor(2) as pool:
                rest = list(pool.map(list, streams[1:]))
            first += list(streams[0])
            assert [len(first), *map(len, rest)] == [30, 12, 8]

            lone = decoder.generate(prompt(tiny_model, "Alone, then joined by a one-token answer", True), greedy(20))
            tokens = [next(lone) for _ in range(3)]
            assert len(list(decoder.generate(prompt(tiny_model, "One token", False), greedy(1)))) == 1
            tokens += list(lone)
            assert len(tokens) == 20

            too_long = list(decoder.generate(prompt(tiny_model, "Longer than the slot holds", False), greedy(250)))
            assert len(too_long) == 250

            arm(torch.cuda.OutOfMemoryError, after_steps=3)
            pair = [decoder.generate(prompt(tiny_model, question, False), greedy(15)) for question in ("Evicted or not?", "Not or evicted?")]
            survivors = []
            for stream in pair:
                try:
                    survivors.append(len(list(stream)))
                except OutOfMemory:
                    pass
            assert survivors == [15]
        finally:
            decoder.close()
    assert slot.compiled and decoder.batch_step.compiled and not counters["graph_break"]
    assert counters["stats"]["unique_graphs"] == warmed, "a kind of step was first compiled during real traffic"


@pytest.mark.parametrize("temperature", [1e-305, 5e-324, 1e-40, 1e-8])
def test_a_temperature_near_zero_samples_the_top_token_rather_than_nan(temperature: float) -> None:
    """Any positive float is a valid temperature; one that rounds to 0 in float32, or that makes the
    top score overflow when divided, is the greedy answer, not a sampling error (found by the /v1 fuzz test)."""
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(1)) * 30
    params = [SamplingParams(temperature=temperature, top_p=0.99)] * 4
    assert torch.equal(sample_rows(logits, params, torch.Generator().manual_seed(0)), logits.argmax(dim=-1))
