"""Starting as a duplicated Space starts: the tiny model serves at once while the real weights are
fetched (with their progress in the status), then they are swapped in without a restart; a second
start loads them directly; a fetch that fails keeps the tiny model, saying why.

The launched app is `tests/tiny7b_app.py` (the real app, its 7b size at the tiny shapes) with a
Space's environment, fetching through the real huggingface_hub client from the fake Hub on
127.0.0.1 (`fake_hub.py`), which serves another tiny set (seed 1) under 7b's default repo ids. On
ZeroGPU (the `spaces` stand-in of test_zerogpu.py) the swap goes the same way.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from gradio_client import Client

from pandagpt_demo.app.conversation.session import ChatSession
from pandagpt_demo.app.server import parse_args
from pandagpt_demo.app.space.environment import SpaceEnv
from pandagpt_demo.config import WEIGHT_SOURCES, ModelConfig, SamplingParams
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.serving.inline import InlineEngine
from pandagpt_demo.weights.synthetic import make_tiny
from tests.app.space.test_zerogpu import STAND_IN, calls
from tests.fake_hub import FakeHub
from tests.launched import App
from tests.tiny7b_app import patch_7b

QUESTION = "What do you see?"
GREEDY = dict(max_new_tokens=12, top_p=0.01, temperature=0.0)
PROGRESS = re.compile(
    r"Fetching the 7b weights: (imagebind_huge\.pth|vicuna_7b_v0|pandagpt_7b) \(part [123] of 3\): [\d.]+ [kMG]?B of [\d.]+ [kMG]?B, "
)


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> ModelConfig:
    """The set the fake Hub serves as the 7b release: tiny shapes, other weights than the app's own tiny model."""
    return make_tiny(tmp_path_factory.mktemp("released"), seed=1)


@pytest.fixture
def hub(released: ModelConfig) -> Iterator[FakeHub]:
    fake = FakeHub(rate=1e6, gate=threading.Event())  # ~28 s for the 28 MB set, from when the test opens the gate
    fake.add_folder(WEIGHT_SOURCES["7b"].vicuna[0].ids[0], released.files.vicuna_dir)
    fake.add_folder(WEIGHT_SOURCES["7b"].delta[0].ids[0], released.files.delta_path.parent)
    with fake:
        fake.imagebind_url = fake.add_url("imagebind_huge.pth", released.files.imagebind_path.read_bytes())
        yield fake


def space_app(start: Callable[..., App], hub: FakeHub, checkpoints: Path, tmp_path: Path, zero_gpu_log: Path | None = None) -> App:
    """The app as a CPU Space told to fetch 7b ($PANDAGPT_DOWNLOAD: a CPU Space fetches nothing unasked); with
    `zero_gpu_log`, a ZeroGPU Space (the `spaces` stand-in, logging its calls there)."""
    zero_gpu = {"SPACES_ZERO_GPU": "true", "SPACES_STAND_IN_LOG": str(zero_gpu_log)} if zero_gpu_log else {}
    env = {
        "SPACE_ID": "someone/pandagpt-duplicate",
        "PANDAGPT_DOWNLOAD": "7b",
        "HF_ENDPOINT": hub.endpoint,
        "PANDAGPT_IMAGEBIND_URL": hub.imagebind_url,
        "HF_HOME": str(tmp_path / "hf-home"),  # no token of the developer's, and the cache apart
        "HF_TOKEN": "",
        **zero_gpu,
    }
    return start(script="tests/tiny7b_app.py", env=env, checkpoints=checkpoints, python_path=(STAND_IN,) if zero_gpu_log else ())


def readiness(app: App) -> dict:
    return httpx.get(app.url + "readyz", timeout=10).json()


def ask(app: App) -> str:
    return Client(app.url, verbose=False).predict(QUESTION, **GREEDY, api_name="/chat")


def weight_requests(hub: FakeHub) -> list:
    """What was asked of the repos and files (not Gradio's own telemetry, which goes to the same endpoint)."""
    return [r for r in hub.log if r.server == "cdn" or "/api/models/" in r.path or "/resolve/" in r.path]


def swapped(app: App) -> list[dict]:
    """/readyz's states from the gate's opening until the 7b weights serve."""
    seen: list[dict] = []
    deadline = time.monotonic() + 120
    while (state := readiness(app))["model"] != "7b":
        assert time.monotonic() < deadline, f"no swap after 120 s; last state {state}"
        seen.append(state)
        time.sleep(0.25)
    return [*seen, state]


def answer_of(config: ModelConfig) -> str:
    """What the set in `config` answers QUESTION, loaded here and decoded inline."""
    model = PandaGPT.load(config)
    stream = ChatSession().ask(model, InlineEngine(model.llm, model.tokenizer.eos_token_id), QUESTION, SamplingParams(**GREEDY))
    return list(stream)[-1]


def test_a_space_serves_tiny_at_once_fetches_with_progress_swaps_and_the_next_start_loads_directly(
    start: Callable[..., App], hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoints = tmp_path / "checkpoints"
    app = space_app(start, hub, checkpoints, tmp_path)
    tiny_answer = ask(app)  # the tiny model answers while the weights are fetched
    hub.gate.set()
    *seen, state = swapped(app)
    progress = [s["notice"] for s in seen if PROGRESS.match(s["notice"])]
    assert len(progress) >= 3, f"too few progress lines: {[s['notice'] for s in seen]}"
    assert any("/s, about" in line for line in progress)  # a rate and the time left
    assert all(s["ready"] for s in seen), "the tiny model kept serving during the fetch"
    assert "being fetched" in seen[0]["banner"]
    assert state["ready"] and state["notice"] == "" and "Tiny" not in state["banner"]

    patch_7b(monkeypatch.setitem, monkeypatch.setattr)
    expected = answer_of(ModelConfig.preset("7b", checkpoints))
    assert ask(app) == expected != tiny_answer  # the fetched weights answer now, in the same process

    app.stop()
    requests = len(weight_requests(hub))
    again = space_app(start, hub, checkpoints, tmp_path)
    state = readiness(again)
    assert state["model"] == "7b" and state["notice"] == "" and "Tiny" not in state["banner"]
    assert ask(again) == expected
    assert len(weight_requests(hub)) == requests, f"the second start asked for weights: {weight_requests(hub)[requests:]}"


def test_on_zero_gpu_the_fetched_weights_load_where_cuda_works_and_answer_from_workers_forked_after(
    start: Callable[..., App], hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoints, log = tmp_path / "checkpoints", tmp_path / "gpu-calls.jsonl"
    app = space_app(start, hub, checkpoints, tmp_path, zero_gpu_log=log)
    tiny_answer = ask(app)
    hub.gate.set()
    *_, state = swapped(app)
    assert state["ready"] and "failed" not in state["banner"]
    patch_7b(monkeypatch.setitem, monkeypatch.setattr)
    expected = answer_of(ModelConfig.preset("7b", checkpoints, dtype="float16"))  # ZeroGPU's "cuda" runs float16
    assert ask(app) == expected != tiny_answer
    before, after = calls(log)[0], calls(log)[-1]
    assert (before["task"], after["task"], after["ended"]) == ("answer_model1", "answer_model2", "completed")
    assert after["worker"] != before["worker"], "the swapped-in model is answered by a worker forked after it was loaded"


def test_a_fetch_that_fails_keeps_the_tiny_model_and_says_why(start: Callable[..., App], hub: FakeHub, tmp_path: Path) -> None:
    del hub.repos[WEIGHT_SOURCES["7b"].delta[0].ids[0]]  # PandaGPT's delta is gone from the Hub
    hub.gate.set()
    checkpoints = tmp_path / "checkpoints"
    app = space_app(start, hub, checkpoints, tmp_path)
    deadline = time.monotonic() + 60
    while "failed" not in (state := readiness(app))["banner"]:
        assert time.monotonic() < deadline, f"no failure reported after 60 s; last state {state}"
        time.sleep(0.25)
    assert state["model"] == "tiny" and state["ready"] and state["notice"] == ""
    assert "Fetching the 7b weights failed, so the tiny model stays" in state["banner"]
    assert WEIGHT_SOURCES["7b"].delta[0].ids[0] in state["banner"]  # the explanation names what could not be had
    assert ask(app) == answer_of(ModelConfig.preset("tiny", checkpoints))  # it still answers, as the tiny model it started on


def test_where_a_space_keeps_its_weights_and_when_it_fetches(tmp_path: Path) -> None:
    storage = tmp_path / "data"
    storage.mkdir()
    space = SpaceEnv.read({"SPACE_ID": "a/b"}, storage=storage)
    assert space.checkpoints() == storage / "checkpoints"  # persistent storage survives restarts
    no_storage = SpaceEnv.read({"SPACE_ID": "a/b"}, storage=tmp_path / "absent")
    assert no_storage.checkpoints().name == "pandagpt-checkpoints"  # the Hugging Face cache folder
    assert SpaceEnv.read({}, storage=storage).checkpoints() == Path("checkpoints")  # not a Space: the project's folder
    assert space.compile_cache() == storage / "compile-cache"  # compiled steps survive restarts too
    assert no_storage.compile_cache() is None and SpaceEnv.read({}, storage=storage).compile_cache() is None
    assert parse_args([], space).compile_cache == storage / "compile-cache"  # what app.py's start uses

    assert space.to_fetch("7b", asked=False) == "7b"  # a Space fetches at start, on GPU and CPU hardware alike
    assert space.to_fetch("tiny", asked=False) is None
    assert SpaceEnv.read({"SPACE_ID": "a/b", "PANDAGPT_DOWNLOAD": "13b"}).to_fetch("7b", False) == "13b"
    assert SpaceEnv.read({"SPACE_ID": "a/b", "PANDAGPT_DOWNLOAD": "no"}).to_fetch("7b", False) is None
    assert SpaceEnv.read({}).to_fetch("7b", asked=False) is None  # elsewhere only when asked
    assert SpaceEnv.read({}).to_fetch("13b", asked=True) == "13b"
    with pytest.raises(SystemExit, match="PANDAGPT_DOWNLOAD is '30b'"):
        SpaceEnv.read({"PANDAGPT_DOWNLOAD": "30b"})
