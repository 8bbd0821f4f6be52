"""CUDA graph trees work on every engine's decode thread, the first and a swapped-in model's alike.

Inductor keeps its CUDA graph trees per thread, initialised only on the thread that imported
`torch._inductor.cudagraph_trees`; a replay on another thread fails an assertion (on CUDA the
compiled slot step then falls back to eager for good). The lookup a replay makes first,
`get_container`, needs no GPU: here a forward hook makes it from the decode thread, as the slot's
replay would.
"""

from __future__ import annotations

import threading

import torch

from pandagpt_demo.config import SamplingParams
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.serving.batching import BatchedDecoder
from tests.serving.test_batching import prompt


def test_a_thread_other_than_the_importing_one_has_no_graph_trees_by_default() -> None:
    """torch's behaviour this guards against (if a torch release fixes it, this test says so)."""
    from torch._inductor import cudagraph_trees

    failures = []

    def lookup() -> None:
        try:
            cudagraph_trees.get_container(0)
        except AssertionError as error:
            failures.append(error)

    thread = threading.Thread(target=lookup)
    thread.start()
    thread.join()
    assert len(failures) == 1


def test_each_engine_decode_thread_can_replay_cuda_graphs(tiny_model: PandaGPT) -> None:
    from torch._inductor import cudagraph_trees  # imported here, on the test's thread, as by any earlier compile

    looked_up = []

    def replay_lookup(module: torch.nn.Module, args: tuple, output: object) -> None:
        looked_up.append((threading.current_thread().name, cudagraph_trees.get_container(0)))

    handle = tiny_model.llm.model.layers[0].register_forward_hook(replay_lookup)
    try:
        for _ in range(2):  # the first engine, then the one a swapped-in model gets
            decoder = BatchedDecoder(tiny_model.llm, eos_token_id=None, max_batch=2, max_waiting=2)
            try:
                assert len(list(decoder.generate(prompt(tiny_model, "Hello?", False), SamplingParams(max_new_tokens=3, temperature=0.0)))) == 3
            finally:
                decoder.close()
    finally:
        handle.remove()
    assert {name for name, _ in looked_up} == {"batched-decoder"}
    assert len({id(container) for _, container in looked_up}) == 2, "each decode thread has its own trees"
