"""Every tensor that crosses between the front end and a model replica, checked for the GPU-only
mistake on a machine without one: the replica's model is put on a stand-in GPU, the meta device
under torch's FakeTensorMode (shapes, dtypes and devices are propagated, nothing is computed), where
an operation mixing a tensor on that device with a host tensor raises as CUDA does (a 0-d host
tensor aside, as on CUDA), while the front end holds ordinary CPU tensors, as it does behind Ray.
(A fake "cuda" device would be closer in name, but some of its operations reach for the CUDA
driver, which a machine without a GPU lacks.)

The replica side is the real `Replica` deployment class (serving/replicas.py) called in this
process; what Ray would carry across is handed over as real CPU tensors (`_across`), so the front
end's own code (RemoteModel, RemoteEngine, the view) runs as it does in the app.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.utils._pytree import tree_map_only

from pandagpt_demo.config import ModelConfig, SamplingParams
from pandagpt_demo.model import binding
from pandagpt_demo.model.conversation import Conversation
from pandagpt_demo.model.modalities import Modality, load_modality
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.serving.remote import RemoteEngine, RemoteModel, ReplicaStatus
from tests.conftest import REPO_ROOT

pytest.importorskip("ray.serve", reason="the replica's class comes with ray[serve] (requirements-test.txt)")

GPU = torch.device("meta")  # the replica's GPU, played by the meta device under FakeTensorMode
IMAGE, AUDIO = REPO_ROOT / "examples" / "sunset.jpg", REPO_ROOT / "examples" / "dog_bark.wav"


def _on_fake_gpu(model: PandaGPT, mode: FakeTensorMode) -> None:
    """Every weight and buffer of `model` as a fake float16 tensor on the stand-in GPU, as a GPU replica loads it."""
    for module in (model.encoder, model.llama_proj, model.llm):
        for part in module.modules():
            for name, parameter in part._parameters.items():
                if parameter is not None:
                    part._parameters[name] = nn.Parameter(_fake_gpu(parameter.detach(), mode), requires_grad=False)
            for name, buffer in part._buffers.items():
                if buffer is not None:
                    part._buffers[name] = _fake_gpu(buffer, mode)
    model.device, model.dtype = GPU, torch.float16


def _fake_gpu(tensor: torch.Tensor, mode: FakeTensorMode) -> torch.Tensor:
    with mode:
        return mode.from_tensor(tensor).to(GPU, torch.float16 if tensor.is_floating_point() else tensor.dtype)


def _across(value: object) -> object:
    """What Ray hands the other side: each tensor a real one, on the CPU (a replica's result left on
    its GPU would reach a front end that has none)."""

    def real(tensor: torch.Tensor) -> torch.Tensor:
        assert tensor.device.type == "cpu", f"a tensor on {tensor.device} crossed to the front end"
        return torch.zeros(tensor.shape, dtype=tensor.dtype) if isinstance(tensor, FakeTensor) else tensor

    return tree_map_only(torch.Tensor, real, value)


class _Engine:
    """The replica's engine: it checks that a prompt arrives on the model's device and in its dtype."""

    def __init__(self, model: PandaGPT) -> None:
        self.model = model
        self.seen: list[tuple[torch.device, torch.dtype]] = []

    def generate(self, embeds: torch.Tensor, params: SamplingParams, cancel: object) -> Iterator[int]:
        self.seen.append((embeds.device, embeds.dtype))
        assert embeds.device == self.model.device and embeds.dtype == self.model.dtype
        yield 7


@pytest.fixture(scope="module")
def replica(tiny_config: ModelConfig) -> tuple[object, Callable]:
    """A `Replica` on a fake GPU, and how the front end calls it: `call(method, *args)`."""
    from pandagpt_demo.serving.replicas import Replica

    mode = FakeTensorMode(allow_non_fake_inputs=True)  # the front end's CPU tensors come in as they are
    model = PandaGPT.load(tiny_config)
    model.encoder.ensure_loaded("text")  # loaded on the CPU it defers its text tower; on a GPU a replica reads every tower at load
    _on_fake_gpu(model, mode)
    on_replica = object.__new__(Replica.func_or_class)
    on_replica.model, on_replica.engine, on_replica.id = model, _Engine(model), "stand-in-gpu"

    def call(method: str, *args: object) -> object:
        """`method` of the replica on `args`; "stream": its `generate`, read whole (it is an async generator)."""
        with mode:
            if method == "stream":
                result = asyncio.run(_read(on_replica.generate(*args)))
            else:
                result = getattr(on_replica, method)(*args)
        return _across(result)  # out of the mode: real tensors, as the front end gets them

    return on_replica, call


async def _read(items: AsyncIterator[object]) -> list[object]:
    return [item async for item in items]


@pytest.fixture(scope="module")
def front_end(replica: tuple[object, Callable], tiny_config: ModelConfig) -> RemoteModel:
    """The front end's model, wired to the replica as `Cluster.start` wires it to Ray's handles."""
    _, call = replica
    info = call("describe")
    return RemoteModel(
        tiny_config,
        info["tokenizer"],
        info["embedding"],
        lambda modality, data: call("encode", modality.value, data),
        lambda vectors: call("project_each", vectors),
        lambda labels: call("embed_labels", labels),
        lambda inputs: call("imagebind_outputs", [(modality.value, vector) for modality, vector in inputs]),
    )


def test_the_fake_gpu_raises_where_cuda_would(replica: tuple[object, Callable]) -> None:
    """The check itself: a host vector meeting the replica's GPU weights raises, as on CUDA."""
    on_replica, _ = replica
    scale = on_replica.model.encoder.model.modality_postprocessors["audio"][1].log_logit_scale
    with pytest.raises(RuntimeError, match="two different devices"):
        scale * torch.ones(1024, dtype=torch.float16)


def test_files_labels_and_imagebinds_view_cross_to_and_from_a_gpu_replica(front_end: RemoteModel) -> None:
    """Files are preprocessed here and encoded there, their vectors kept here (on the CPU) and sent
    back to be projected, labelled and turned into ImageBind's outputs, audio included."""
    vectors = {kind: front_end.encode(kind, load_modality(kind, path)) for kind, path in ((Modality.IMAGE, IMAGE), (Modality.AUDIO, AUDIO))}
    assert {vector.device.type for vector in vectors.values()} == {"cpu"}
    projected = front_end.project_each(list(vectors.values()))
    assert [vector.device.type for vector in projected] == ["cpu", "cpu"]
    labels = front_end.embed_labels(["a sunset", "a dog barking"])
    outputs = front_end.imagebind_outputs(list(vectors.items()))  # the audio logit scale lives on the replica's GPU
    assert outputs.shape == (2, labels.shape[1]) and outputs.device.type == "cpu"
    assert binding.zero_shot(outputs, labels).shape == (2, 2)


def test_an_answers_prompt_is_built_here_and_decoded_on_the_gpu_replica(front_end: RemoteModel, replica: tuple[object, Callable]) -> None:
    """The prompt's embeddings (the fused vector among them) are made here, on the CPU; the replica
    moves them to its GPU before its engine sees them."""
    on_replica, call = replica
    vector = front_end.encode(Modality.IMAGE, load_modality(Modality.IMAGE, IMAGE))
    conversation = Conversation()
    conversation.ask("What is this?")
    embeds = front_end.prompt_embeds(conversation, front_end.fuse([vector]))
    assert embeds.device.type == "cpu"
    engine = RemoteEngine(lambda embeds, params: _Stream(call("stream", embeds, params)), lambda: ReplicaStatus(1, 1), lost=ConnectionError)
    assert list(engine.generate(embeds, SamplingParams(4))) == [7]
    assert on_replica.engine.seen == [(GPU, torch.float16)]


class _Stream:
    """A replica's token stream as `RemoteEngine` reads it (serving/replicas.py `_Stream`), already read."""

    def __init__(self, items: list[object]) -> None:
        self.items = items

    def __iter__(self) -> Iterator[object]:
        return iter(self.items)

    def cancel(self) -> None:
        """Nothing left to stop: the replica's stream was read whole."""
