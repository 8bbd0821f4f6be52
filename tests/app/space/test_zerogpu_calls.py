"""ZeroGPU's calls in this process (no stand-in, no launched app): what crosses a call, which request a
call is scheduled with, which calls are made at all and what they ask for.

`spaces` is replaced by `RecordingSpaces`, which runs each call here and records what the real
package reads when it schedules one (spaces 0.51, `zero/wrappers.py: generator_function_wrapper`):
the request in `gradio.context.LocalContext.request` where the call is first advanced, and the
seconds `duration(*args)` asks for.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from gradio.context import LocalContext

from pandagpt_demo.app.answering.metrics import MeteredEngine
from pandagpt_demo.app.conversation.chatlog import Attachment, Exchange
from pandagpt_demo.app.conversation.each import answer_blend, answer_each
from pandagpt_demo.app.conversation.session import ChatSession
from pandagpt_demo.app.conversation.view import imagebind_view
from pandagpt_demo.app.space import gpu_jobs
from pandagpt_demo.app.space.gpu_jobs import Encoded, FileToFuse, LabelEncoded
from pandagpt_demo.app.space.zerogpu import GpuCalls, estimate_seconds
from pandagpt_demo.config import SamplingParams, ZeroGpuConfig
from pandagpt_demo.model.binding import LabelVectors
from pandagpt_demo.model.modalities import Modality
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.serving.engine import Engine
from tests.conftest import REPO_ROOT
from tests.shared_memory import shared_fds

IMAGE, AUDIO = REPO_ROOT / "examples" / "sunset.jpg", REPO_ROOT / "examples" / "dog_bark.wav"
LABELS = "a sunset, a dog barking, rain"
VISITOR = SimpleNamespace(headers={"x-ip-token": "visitor"})  # what spaces reads of a gr.Request


class RecordingSpaces:
    """A `spaces` module whose GPU calls run here, each recorded as the real package would schedule it."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def GPU(self, task: Callable[..., Iterator], duration: Callable[..., int]) -> Callable[..., Iterator]:  # noqa: N802 - the real package's name
        def handler(*args: object, **kwargs: object) -> Iterator:
            request = LocalContext.request.get(None)  # read where the call is first advanced, as spaces does
            self.calls.append({"request": request, "duration": duration(*args, **kwargs), "job": args[0]})
            yield from task(*args, **kwargs)

        return handler


@pytest.fixture
def spaces(monkeypatch: pytest.MonkeyPatch) -> RecordingSpaces:
    recording = RecordingSpaces()
    monkeypatch.setitem(sys.modules, "spaces", recording)
    return recording


@pytest.fixture
def gpu(spaces: RecordingSpaces, tiny_model: PandaGPT, tiny_engine: Engine) -> GpuCalls:
    """The app's GPU calls, the tiny model served (ZeroGPU decodes inline, as `tiny_engine` does)."""
    handle = SimpleNamespace(generation=1, get=lambda timeout: (tiny_model, tiny_engine))
    metrics = SimpleNamespace(encoded=lambda kind, seconds: None)
    return GpuCalls(ZeroGpuConfig(), handle, metrics)


def session_with(*files: tuple[Path, Modality]) -> ChatSession:
    return ChatSession([Exchange("What is this?")], in_use=[Attachment.of(path, kind) for path, kind in files])


def last(stream: Iterator) -> object:
    return deque(stream, maxlen=1)[0]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_vectors_cross_a_call_as_ordinary_tensors_not_shared_memory(dtype: torch.dtype) -> None:
    """ForkingPickler, as spaces sends arguments and results, would move each tensor (the sender's
    own too) into shared memory held by a file descriptor; a call's vectors cross as their bytes."""
    key = (Modality.IMAGE, "0" * 64)
    vectors = [torch.randn(1024).to(dtype) for _ in range(3)]
    crossing = [FileToFuse(Modality.IMAGE, IMAGE, key, 1.0, vectors[0]), Encoded(key, vectors[1], 0.5), LabelEncoded("rain", vectors[2])]
    before = shared_fds()
    arrived = [ForkingPickler.loads(ForkingPickler.dumps(item)) for item in crossing]
    assert [vector.is_shared() for vector in vectors] == [False] * 3, "the sender's tensors stay where they are"
    assert arrived[0].path == IMAGE and arrived[1].seconds == 0.5 and arrived[2].label == "rain"
    for item, sent in zip(arrived, vectors):
        vector = item.vector
        assert not vector.is_shared() and vector.dtype == dtype and torch.equal(vector, sent)
    assert shared_fds() == before
    assert ForkingPickler.loads(ForkingPickler.dumps(FileToFuse(Modality.IMAGE, IMAGE, key, 1.0, None))).vector is None


def test_a_grant_counts_from_when_its_call_is_handed_to_the_worker() -> None:
    """spaces pickles a call's arguments for its worker right after the grant: the deadline counts from then."""
    grant = gpu_jobs.Grant(30, at=0.0)
    handed = time.monotonic()
    arrived = ForkingPickler.loads(ForkingPickler.dumps(grant))
    assert handed <= arrived.at <= time.monotonic() and arrived.seconds == 30
    assert arrived.deadline(margin_s=10) == arrived.at + 20


def test_the_view_makes_no_gpu_call_when_every_vector_label_and_scale_it_needs_is_kept(
    spaces: RecordingSpaces, gpu: GpuCalls, tiny_model: PandaGPT
) -> None:
    session, labels = session_with((IMAGE, Modality.IMAGE), (AUDIO, Modality.AUDIO)), LabelVectors()
    first = imagebind_view(gpu.model(tiny_model), session, LABELS, labels)
    again = imagebind_view(gpu.model(tiny_model), session, LABELS, labels)  # a later request of the same session
    without_labels = imagebind_view(gpu.model(tiny_model), session, "", labels)
    assert len(spaces.calls) == 1, "everything was kept after the first view: no GPU call"
    [call] = spaces.calls
    assert len(call["job"].files) == 2 and len(call["job"].labels) == 3 and set(call["job"].kinds) == {Modality.IMAGE, Modality.AUDIO}
    assert again == first and without_labels.similarity == first.similarity
    expected = imagebind_view(tiny_model, session_with((IMAGE, Modality.IMAGE), (AUDIO, Modality.AUDIO)), LABELS, LabelVectors())
    assert (first.similarity, first.probabilities) == (expected.similarity, expected.probabilities), "the outputs made here are ImageBind's"

    other = session_with((IMAGE, Modality.IMAGE), (AUDIO, Modality.AUDIO))  # a new session: its vectors are not kept
    imagebind_view(gpu.model(tiny_model), other, "rain, thunder", labels)
    [(_, job)] = [(call["request"], call["job"]) for call in spaces.calls[1:]]
    assert len(job.files) == 2 and job.labels == ("thunder",) and job.kinds == (), "only what is not kept is asked of the GPU"


def test_every_gpu_call_is_scheduled_with_the_request_that_made_it(spaces: RecordingSpaces, gpu: GpuCalls, tiny_model: PandaGPT) -> None:
    """An answer table's call is first advanced on a thread of its own, where the request is unset."""
    session = session_with((IMAGE, Modality.IMAGE), (AUDIO, Modality.AUDIO))
    model, engine = gpu.model(tiny_model), MeteredEngine(None)
    request = LocalContext.request.set(VISITOR)
    try:
        rows = last(answer_each(session, model, engine, 4))
        blended = last(answer_blend(session, model, engine, 4, steps=2))
        imagebind_view(model, session_with((IMAGE, Modality.IMAGE)), "rain", LabelVectors())
        answer = last(ChatSession().ask(model, engine, "Hello?", SamplingParams(4)))
    finally:
        LocalContext.request.reset(request)
    assert all(row.done and row.error is None for row in rows + blended) and answer
    assert [call["request"] for call in spaces.calls] == [VISITOR] * 4


def test_an_answer_tables_call_asks_for_the_seconds_its_rows_need(spaces: RecordingSpaces, gpu: GpuCalls, tiny_model: PandaGPT) -> None:
    config, tokens, kinds = ZeroGpuConfig(), 300, [Modality.IMAGE, Modality.AUDIO]
    session = session_with((IMAGE, Modality.IMAGE), (AUDIO, Modality.AUDIO))
    model = gpu.model(tiny_model)
    tables = (
        lambda: answer_each(session, model, MeteredEngine(None), tokens),
        lambda: answer_blend(session, model, MeteredEngine(None), tokens, steps=9),
    )
    for table in tables:
        rows = table()
        next(rows)
        rows.close()  # the call was asked for its seconds when the first row was read: no need to decode
    each, blend = (call["duration"] for call in spaces.calls)
    assert each > estimate_seconds(config, tokens, kinds) and blend > estimate_seconds(config, tokens, []), "more than one answer's seconds"
    assert each == estimate_seconds(config, tokens, kinds, rows=3)
    assert blend == estimate_seconds(config, tokens, [], rows=9) < config.max_s  # the files' vectors were kept by the first table


def test_output_scales_are_kept_per_model_served(spaces: RecordingSpaces, gpu: GpuCalls, tiny_model: PandaGPT) -> None:
    """A model swapped in (the real weights, after a fetch) asks for its own scales."""
    model = gpu.model(tiny_model)
    imagebind_view(model, session_with((AUDIO, Modality.AUDIO)), "rain", LabelVectors())
    gpu.handle.generation = 2
    assert gpu.model(tiny_model).scales == {} and gpu.model(tiny_model).scales is not model.scales
    assert model.scales.keys() == {Modality.AUDIO}
