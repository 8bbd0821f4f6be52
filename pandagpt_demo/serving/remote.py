"""A model and an engine whose heavy work happens elsewhere (model replicas, replicas.py).

`RemoteModel` is a PandaGPT without its weights: it builds prompts here (the tokenizer and the
LLM's input-embedding table, copied once from a replica) and preprocesses files here, while the
projection (ImageBind and `llama_proj`) runs on a replica. So files never leave the front end,
a session's embedding cache holds vectors wherever its next request is decoded, and what crosses
to a replica is plain data: a preprocessed tensor, or prompt embeddings and sampling settings.
`RemoteEngine` is the `Engine` that streams a prompt's token ids back from whichever replica the
router picks. Nothing here imports Ray: replicas.py hands in the calls.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from pandagpt_demo.config import ModelConfig, SamplingParams
from pandagpt_demo.errors import Unavailable
from pandagpt_demo.model.modalities import Modality
from pandagpt_demo.model.pandagpt import PandaGPT

from .engine import CLOSED, EngineStats

LOST = "The model replica answering this stopped (its process ended); the text so far is kept. Press Regenerate to answer again."


class ReplicaLost(Unavailable):
    """The replica decoding an answer died mid-stream; other answers go on, and Serve restarts it."""


class _InputEmbeddings(nn.Module):
    """What prompt building needs of the LLM: its input-embedding table."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding.from_pretrained(weight, freeze=True)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens


class RemoteModel(PandaGPT):
    """PandaGPT whose encoder and LLM live in replicas; prompts and preprocessing happen here."""

    def __init__(
        self,
        config: ModelConfig,
        tokenizer,
        embedding: torch.Tensor,
        encode: Callable[[Modality, torch.Tensor], torch.Tensor],
        project_each: Callable[[list[torch.Tensor]], list[torch.Tensor]],
        embed_labels: Callable[[list[str]], torch.Tensor],
        imagebind_outputs: Callable[[list[tuple[Modality, torch.Tensor]]], torch.Tensor],
    ) -> None:
        """`encode` and `project_each` run a replica's ImageBind and llama_proj (its weights, its
        device and dtype); an answer's files are projected in one call to a replica. ImageBind's
        view has its text tower and outputs there too (`embed_labels`, `imagebind_outputs`)."""
        super().__init__(config, encoder=None, llama_proj=None, llm=_InputEmbeddings(embedding), tokenizer=tokenizer)
        self.device = torch.device("cpu")
        self.dtype = embedding.dtype  # the replicas' own, so prompts are the ones a replica would build
        self._encode = encode
        self._project_each = project_each
        self._embed_labels = embed_labels
        self._imagebind_outputs = imagebind_outputs

    def encode(self, modality: Modality, data: torch.Tensor) -> torch.Tensor:
        return self._encode(modality, data)

    def project(self, vector: torch.Tensor) -> torch.Tensor:
        return self._project_each([vector])[0]

    def project_each(self, vectors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return self._project_each(list(vectors))

    def embed_labels(self, labels: Sequence[str]) -> torch.Tensor:
        return self._embed_labels(list(labels))

    def imagebind_outputs(self, inputs: Sequence[tuple[Modality, torch.Tensor]]) -> torch.Tensor:
        return self._imagebind_outputs(list(inputs))


@dataclass(frozen=True)
class ReplicaStatus:
    ready: int  # replicas running and healthy
    total: int  # replicas wanted (autoscaling: the current target)


class TokenStream(Protocol):
    """What a replica streams: first `{"replica": id}`, then token ids; `cancel` stops it there."""

    def __iter__(self) -> Iterator[object]: ...

    def cancel(self) -> None: ...


class RemoteEngine:
    """The engine seam over replicas: each `generate` opens a stream on one of them (the router's
    choice). A replica that dies before the first token is retried once on another; one that dies
    mid-answer ends that answer with `ReplicaLost`, keeping its text."""

    def __init__(
        self, open_stream: Callable[[torch.Tensor, SamplingParams], TokenStream], status: Callable[[], ReplicaStatus], lost: type[Exception]
    ) -> None:
        """`lost`: the exception a stream raises when its replica died (Ray's ActorDiedError)."""
        self._open = open_stream
        self._status = status
        self._lost = lost
        self._lock = threading.Lock()
        self._active = 0
        self._tokens = 0
        self._closed = False
        self.served: Counter[str] = Counter()  # answers each replica started, by replica id

    def generate(self, embeds: torch.Tensor, params: SamplingParams, cancel: threading.Event | None = None) -> Iterator[int]:
        if self._closed:
            raise Unavailable(CLOSED)
        return self._stream(embeds.detach().cpu(), params, cancel)

    def _stream(self, embeds: torch.Tensor, params: SamplingParams, cancel: threading.Event | None) -> Iterator[int]:
        with self._lock:
            self._active += 1
        stream, produced = None, 0
        try:
            for attempt in range(2):
                stream = self._open(embeds, params)
                try:
                    for item in stream:
                        if isinstance(item, dict):
                            with self._lock:
                                self.served[item["replica"]] += 1
                            continue
                        if cancel is not None and cancel.is_set():
                            return
                        produced += 1
                        with self._lock:
                            self._tokens += 1
                        yield item
                    return
                except self._lost as error:
                    if produced or attempt:
                        raise ReplicaLost(LOST) from error
        finally:
            if stream is not None:
                stream.cancel()
            with self._lock:
                self._active -= 1

    def close(self) -> None:
        self._closed = True

    @property
    def ready(self) -> bool:
        return not self._closed and self._status().ready > 0

    def status(self) -> ReplicaStatus:
        return self._status()

    def stats(self) -> EngineStats:
        """Answers open from here and tokens streamed here; queues and steps are the replicas' own."""
        with self._lock:
            return EngineStats(waiting=0, active=self._active, tokens=self._tokens, steps=0)
