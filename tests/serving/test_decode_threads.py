"""CUDA graph trees work on every engine's decode thread, the first and a swapped-in model's alike.

Inductor keeps its CUDA graph trees per thread, initialised only on the thread that imported
`torch._inductor.cudagraph_trees`; a replay on another thread fails an assertion (on CUDA the
compiled slot step then falls back to eager for good). The lookup a replay makes first,
`get_container`, needs no GPU: here a forward hook makes it from the decode thread, as the slot's
replay would.

Only a compiled slot replays CUDA graphs, so only then does a decode thread set up graph trees, and
the module is imported by the thread that builds the engine: a decode thread importing Inductor
while the main thread went on with the model crashed a CPU bench run (SIGSEGV, about one start in
seven) where nothing is compiled at all.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import torch

from pandagpt_demo.config import SamplingParams
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.serving.batching import BatchedDecoder
from pandagpt_demo.serving.static_decode import StaticSlot
from tests.conftest import REPO_ROOT
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
            # compiling the slot's step meets the hook's side effects and falls back to eager, where the hook runs
            slot = StaticSlot(tiny_model.llm, 64, compile_step=True)
            decoder = BatchedDecoder(tiny_model.llm, eos_token_id=None, max_batch=2, max_waiting=2, slot=slot)
            try:
                assert len(list(decoder.generate(prompt(tiny_model, "Hello?", False), SamplingParams(max_new_tokens=3, temperature=0.0)))) == 3
                assert decoder.steps["slot"] > 0
            finally:
                decoder.close()
    finally:
        handle.remove()
    assert {name for name, _ in looked_up} == {"batched-decoder"}
    assert len({id(container) for _, container in looked_up}) == 2, "each decode thread has its own trees"


def test_an_engine_that_compiles_nothing_never_imports_inductor(tmp_path: Path) -> None:
    """In a fresh process (a test before may have imported it): a CPU engine's decoding leaves
    Inductor alone, on its decode thread and everywhere else."""
    code = """
import sys
from pandagpt_demo.config import SamplingParams, ServingConfig
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.serving.start import start_engine
from pathlib import Path
from pandagpt_demo.weights.synthetic import make_tiny
model = PandaGPT.load(make_tiny(Path(sys.argv[1])))
engine = start_engine(model, ServingConfig(max_batch=2, max_waiting=2))
from tests.serving.test_batching import prompt
assert len(list(engine.generate(prompt(model, "Hello?", False), SamplingParams(max_new_tokens=3, temperature=0.0)))) == 3
engine.close()
print("inductor" if "torch._inductor.cudagraph_trees" in sys.modules else "no inductor")
"""
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "tiny")], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "no inductor"
