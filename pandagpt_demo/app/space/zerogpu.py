"""ZeroGPU: the GPU exists only inside `spaces.GPU` calls, each run in a worker process forked from
this one and granted the seconds it asked for.

What the rules of the `spaces` package mean here (tests/zerogpu_stand_in/spaces.py keeps them):

- Outside a call, tensors can be put on "cuda" only on the thread that imported `spaces` (app.py:
  the main thread; its torch modes are thread-local, and CUDA's initialisation raises elsewhere).
  So every model is loaded there: the first, and one swapped in after a fetch (`runtime.MainThreadLoads`).
- A call's worker has this process's memory as it was when forked, keeps what it changes to itself,
  and what crosses is pickled; a GPU tensor sent back cannot be read here. So an answer's one GPU
  call only computes: it gets plain data (the fitted conversation, the files with the vectors the
  session has, on the CPU, the settings) and yields plain data (each new vector, on the CPU, then
  token ids). The session, its cache, the upload holds, the drain's count, the metrics and the text
  stay in this process, around the call (`GpuModel`, used by ChatSession like the model itself).
- An exception raised in a call comes back as its class name alone, so a user's error (a bad file,
  the time limit) comes back as data (`Refused`) and is raised again here, message and all.
- A worker serves the later calls of its decorated function: each model served gets a function of
  its own, so a swapped-in model is answered by workers forked after it was loaded. The first one's
  is decorated before launch: `spaces` tells ZeroGPU the Space started only if some function is.
- Each call asks for the seconds its request needs (`estimate_seconds`: the files to encode and the
  tokens to decode); the answer stops `margin_s` before they are up, keeping its text, rather than
  being killed by ZeroGPU with it.
- ImageBind's view of the files in use (`look`) and an answer table (`stream_rows`: Answer each, Blend
  two) are one call each as well, never one per file or per row: the table's rows are decoded
  together in the call (gpu_rows.py). What crosses a call is in gpu_jobs.py.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import torch

from pandagpt_demo.app.answering.metrics import MeteredEngine, Metrics
from pandagpt_demo.app.conversation.embeddings import CacheKey, EmbeddingCache
from pandagpt_demo.app.conversation.session import Mix, RowStream
from pandagpt_demo.app.runtime import ModelHandle
from pandagpt_demo.config import ModelConfig, SamplingParams, ZeroGpuConfig
from pandagpt_demo.errors import UserError
from pandagpt_demo.model.binding import LabelVectors
from pandagpt_demo.model.context import ContextFit
from pandagpt_demo.model.conversation import Conversation
from pandagpt_demo.model.generation import stream_text
from pandagpt_demo.model.modalities import Modality
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.serving.deadlines import WithinDeadline

from .gpu_jobs import AnswerJob, Encoded, FileToFuse, LabelEncoded, Looked, LookJob, Refused, RowsJob, kinds_to_encode
from .gpu_rows import RowStreams, decode_rows


def on_zero_gpu(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this is a ZeroGPU Space (as `spaces` itself reads it; app.py repeats it, before any import of torch)."""
    return environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")


def estimate_seconds(config: ZeroGpuConfig, max_new_tokens: int, to_encode: Iterable[Modality]) -> int:
    """Seconds to ask ZeroGPU for: encoding `to_encode`, decoding `max_new_tokens`, the margin; within [min_s, max_s]."""
    per_kind = dict(config.encode_s)
    needed = config.margin_s + sum(per_kind[kind.value] for kind in to_encode) + max(max_new_tokens, 0) * config.token_s
    return int(min(max(math.ceil(needed), config.min_s), config.max_s))


@dataclass(frozen=True)
class PendingVector:
    """An answer's vector before its GPU call makes it: the files, and the cache its new vectors go to."""

    cache: EmbeddingCache
    files: tuple[FileToFuse, ...]


class GpuModel:
    """The model as a ZeroGPU answer uses it, in this process: the session's files are looked up in its
    cache (`pending`), the prompt is fitted here, and `stream` makes the one GPU call of the answer."""

    def __init__(self, model: PandaGPT, call: Callable[..., Iterator[Encoded | Refused | int]], config: ZeroGpuConfig, metrics: Metrics) -> None:
        """`call(job, granted=seconds)`: the `spaces.GPU` function of this model (`GpuCalls`)."""
        self.model = model
        self.call = call
        self.zero_gpu = config
        self.metrics = metrics

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    def fit(self, conversation: Conversation, with_vector: bool, max_new_tokens: int) -> ContextFit:
        return self.model.fit(conversation, with_vector, max_new_tokens)  # the tokenizer only: no GPU

    def pending(self, cache: EmbeddingCache, files: Sequence[tuple[Modality, Path]], weights: Sequence[float]) -> PendingVector | None:
        """The files of an answer's vector with the vectors `cache` has (a file that cannot be read raises MediaError)."""
        if not files:
            return None
        return PendingVector(cache, self._files(cache, files, weights))

    def _files(self, cache: EmbeddingCache, files: Sequence[tuple[Modality, Path]], weights: Sequence[float]) -> tuple[FileToFuse, ...]:
        keys = cache.keys(files, source=self.config)
        return tuple(FileToFuse(kind, Path(path), key, weight, cache.get(key)) for (kind, path), key, weight in zip(files, keys, weights))

    def _keep(self, cache: EmbeddingCache) -> Callable[[Encoded], None]:
        """What happens here to a vector a call made: it joins `cache`, its time the metrics."""

        def keep(event: Encoded) -> None:
            cache.add(event.key, event.vector)
            self.metrics.encoded(event.key[0], event.seconds)

        return keep

    def look(
        self, cache: EmbeddingCache, files: Sequence[tuple[Modality, Path]], labels: Sequence[str], label_cache: LabelVectors
    ) -> tuple[list[torch.Tensor], torch.Tensor | None, torch.Tensor | None]:
        """ImageBind's view in one GPU call: the files' vectors and, with labels, ImageBind's outputs
        of the files and the labels' vectors; the vectors it makes join `cache` and `label_cache`."""
        fused = self._files(cache, files, [1.0] * len(files))
        known = label_cache.known(labels, source=self.config)
        job = LookJob(fused, tuple(label for label in labels if label not in known), bool(labels))
        granted = estimate_seconds(self.zero_gpu, 0, kinds_to_encode(fused))
        keep, outputs, made = self._keep(cache), None, {}
        for event in self._events(self.call(job, granted=granted)):
            if isinstance(event, Encoded):
                keep(event)
            elif isinstance(event, LabelEncoded):
                made[event.label] = event.vector
            elif isinstance(event, Looked):
                outputs = event.outputs
        label_cache.keep(made, source=self.config)
        vectors = [cache.get(file.key) if file.vector is None else file.vector for file in fused]
        label_vectors = torch.stack([{**known, **made}[label] for label in labels]) if labels else None
        return vectors, outputs, label_vectors

    def stream_rows(
        self,
        conversation: Conversation,
        cache: EmbeddingCache,
        files: Sequence[tuple[Modality, Path]],
        mixes: Sequence[Mix],
        params: SamplingParams,
        engine: MeteredEngine,
    ) -> list[RowStream]:
        """An answer table's rows, each a mix of `files`, decoded together in one GPU call (opened
        when the first row is read); the vectors it makes join `cache`."""
        job = RowsJob(conversation, self._files(cache, files, [1.0] * len(files)), tuple(mixes), params)
        granted = estimate_seconds(self.zero_gpu, params.max_new_tokens, kinds_to_encode(job.files))
        events = self.call(job, granted=granted)
        return RowStreams(events, len(mixes), self._keep(cache), self.model, engine, params).streams()

    def stream(self, conversation: Conversation, vector: PendingVector | None, params: SamplingParams, engine: MeteredEngine) -> Iterator[str]:
        """The answer's text, piece by piece, from one GPU call asking for the seconds it needs; the
        vectors it makes join the session's cache, its tokens are counted by `engine` here."""
        job = AnswerJob(conversation, vector.files if vector is not None else (), params)
        granted = estimate_seconds(self.zero_gpu, params.max_new_tokens, kinds_to_encode(job.files))
        tokens = self._tokens(self.call(job, granted=granted), vector)
        yield from stream_text(self.model.tokenizer, engine.relay(tokens, params), self.config.spec.prompt.stop_text)

    def _tokens(self, events: Iterator[Encoded | Refused | int], vector: PendingVector | None) -> Iterator[int]:
        """The call's token ids; its vectors go to the session's cache."""
        for event in self._events(events):
            if isinstance(event, Encoded):
                self._keep(vector.cache)(event)
            else:
                yield event

    @staticmethod
    def _events(events: Iterator[object]) -> Iterator[object]:
        """A call's events but a refusal (its last), which is raised once the call has ended; stopping early stops the call."""
        refused = None
        with closing(events):
            for event in events:
                if isinstance(event, Refused):
                    refused = event.error
                else:
                    yield event
        if refused is not None:
            raise refused


class GpuCalls:
    """The GPU calls of one app's answers: a `spaces.GPU` function per model served."""

    def __init__(self, config: ZeroGpuConfig, handle: ModelHandle, metrics: Metrics) -> None:
        self.config = config
        self.handle = handle
        self.metrics = metrics
        self._functions: dict[int, Callable[..., Iterator]] = {}
        self._lock = threading.Lock()
        self._function(handle.generation + 1)  # the first model's, decorated before launch (see the module's docstring)

    def model(self, model: PandaGPT) -> GpuModel:
        """`model` (the one served now) as this process's answers use it."""
        return GpuModel(model, self._function(self.handle.generation), self.config, self.metrics)

    def _function(self, generation: int) -> Callable[..., Iterator]:
        with self._lock:
            if generation not in self._functions:
                import spaces

                def answer(job: AnswerJob, granted: int) -> Iterator[Encoded | Refused | int]:
                    yield from self._compute(job, granted)

                answer.__name__ = f"answer_model{generation}"
                self._functions[generation] = spaces.GPU(answer, duration=lambda job, granted: granted)
            return self._functions[generation]

    def _compute(self, job: AnswerJob | LookJob | RowsJob, granted: int) -> Iterator[object]:
        """(In the worker.) Encode the files the session lacks (each new vector goes back), then the job's own work."""
        deadline = time.monotonic() + granted - self.config.margin_s
        message = (
            f"This answer used up the GPU time ZeroGPU granted it (about {granted} s) and stops here. "
            "Ask for fewer new tokens, or ask PandaGPT to go on."
        )
        try:
            model, engine = self.handle.get(timeout=0)  # this worker's copy: the model served when it was forked
            vectors = yield from _vectors(model, job.files)
            if isinstance(job, AnswerJob):
                fused = model.fuse(vectors, [file.weight for file in job.files])
                yield from WithinDeadline(engine, deadline, message).generate(model.prompt_embeds(job.conversation, fused), job.params)
            elif isinstance(job, LookJob):
                yield from _look(model, job, vectors)
            else:
                yield from decode_rows(model, vectors, job, deadline, message)
        except UserError as error:
            yield Refused(error)


def _vectors(model: PandaGPT, files: tuple[FileToFuse, ...]) -> Generator[Encoded, None, list[torch.Tensor]]:
    """(In the worker.) Each file's vector on the model's device, yielding each one made here (each content once)."""
    made: dict[CacheKey, torch.Tensor] = {}
    for file in files:
        if file.vector is None and file.key not in made:
            started = time.perf_counter()
            made[file.key] = model.embed_file(file.kind, file.path)
            yield Encoded(file.key, made[file.key].cpu(), time.perf_counter() - started)
    return [(file.vector if file.vector is not None else made[file.key]).to(model.device) for file in files]


def _look(model: PandaGPT, job: LookJob, vectors: list[torch.Tensor]) -> Iterator[LabelEncoded | Looked]:
    """(In the worker.) The vectors of the labels the app lacks, and ImageBind's outputs of the files if labels were asked about."""
    if job.labels:
        for label, vector in zip(job.labels, model.embed_labels(job.labels)):
            yield LabelEncoded(label, vector.cpu())
    if job.outputs:
        yield Looked(model.imagebind_outputs([(file.kind, vector) for file, vector in zip(job.files, vectors)]).cpu())
