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
- Each call asks for the seconds its request needs (`estimate_seconds`: the files to encode, the
  tokens to decode, the rows decoding them); the answer stops `margin_s` before they are up,
  counted from the grant (`Grant`), keeping its text, rather than being killed by ZeroGPU with it.
- A call is scheduled on the quota of the visitor whose request `spaces` finds in the context
  advancing it (gradio's `LocalContext.request`, a contextvar), so each call is advanced in the
  context of the request that made it (`_in_context`), wherever it is read: an answer table's is
  read on a thread of its own.
- ImageBind's view of the files in use (`look`) and an answer table (`stream_rows`: Answer each, Blend
  two) are one call each as well, never one per file or per row: the table's rows are decoded
  together in the call (gpu_rows.py). The view makes no call at all when the vectors, the labels
  and ImageBind's output scales it needs are all kept here. What crosses a call is in gpu_jobs.py.
"""

from __future__ import annotations

import contextvars
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
from pandagpt_demo.model import binding
from pandagpt_demo.model.binding import LabelVectors
from pandagpt_demo.model.context import ContextFit
from pandagpt_demo.model.conversation import Conversation
from pandagpt_demo.model.generation import stream_text
from pandagpt_demo.model.modalities import Modality
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.serving.deadlines import WithinDeadline

from .gpu_jobs import AnswerJob, Encoded, FileToFuse, Grant, LabelEncoded, LookJob, Refused, RowsJob, Scales, kinds_to_encode
from .gpu_rows import RowStreams, decode_rows


def on_zero_gpu(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this is a ZeroGPU Space (as `spaces` itself reads it; app.py repeats it, before any import of torch)."""
    return environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")


def estimate_seconds(config: ZeroGpuConfig, max_new_tokens: int, to_encode: Iterable[Modality], rows: int = 1) -> int:
    """Seconds to ask ZeroGPU for: encoding `to_encode`, decoding `max_new_tokens` for each of `rows`
    answers decoded together (an answer table's), the margin; within [min_s, max_s]."""
    per_kind = dict(config.encode_s)
    step_s = config.token_s * (1 + (rows - 1) * config.row_step_share)
    needed = config.margin_s + sum(per_kind[kind.value] for kind in to_encode) + max(max_new_tokens, 0) * step_s
    return int(min(max(math.ceil(needed), config.min_s), config.max_s))


def _in_context(context: contextvars.Context, events: Iterator[object]) -> Iterator[object]:
    """`events` (a GPU call) advanced, and closed, inside `context`, whichever thread reads it."""
    try:
        while True:
            try:
                event = context.run(next, events)
            except StopIteration:
                return
            yield event
    finally:
        context.run(events.close)


@dataclass(frozen=True)
class PendingVector:
    """An answer's vector before its GPU call makes it: the files, and the cache its new vectors go to."""

    cache: EmbeddingCache
    files: tuple[FileToFuse, ...]


class GpuModel:
    """The model as a ZeroGPU answer uses it, in this process: the session's files are looked up in its
    cache (`pending`), the prompt is fitted here, and `stream` makes the one GPU call of the answer."""

    def __init__(
        self,
        model: PandaGPT,
        call: Callable[..., Iterator[Encoded | Refused | int]],
        config: ZeroGpuConfig,
        metrics: Metrics,
        scales: dict[Modality, float],
    ) -> None:
        """`call(job, grant)`: the `spaces.GPU` function of this model (`GpuCalls`); `scales`: ImageBind's
        output scale of each kind learnt from this model's calls, kept by the app (`GpuCalls`)."""
        self.model = model
        self.call = call
        self.zero_gpu = config
        self.metrics = metrics
        self.scales = scales

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

    def _open(self, job: AnswerJob | LookJob | RowsJob, seconds: int) -> Iterator[object]:
        """The GPU call of `job` asking for `seconds`, advanced in this request's context (see the module's docstring)."""
        return _in_context(contextvars.copy_context(), self.call(job, Grant(seconds)))

    def _keep(self, cache: EmbeddingCache) -> Callable[[Encoded], None]:
        """What happens here to a vector a call made: it joins `cache`, its time the metrics."""

        def keep(event: Encoded) -> None:
            cache.add(event.key, event.vector)
            self.metrics.encoded(event.key[0], event.seconds)

        return keep

    def look(
        self, cache: EmbeddingCache, files: Sequence[tuple[Modality, Path]], labels: Sequence[str], label_cache: LabelVectors
    ) -> tuple[list[torch.Tensor], torch.Tensor | None, torch.Tensor | None]:
        """ImageBind's view: the files' vectors and, with labels, ImageBind's outputs of the files and
        the labels' vectors. What is not kept here (the session's vectors, the app's label vectors and
        output scales) is made in one GPU call, and kept; with all of it kept, there is no call."""
        fused = self._files(cache, files, [1.0] * len(files))
        known = label_cache.known(labels, source=self.config)
        kinds = {file.kind for file in fused} if labels else set()
        job = LookJob(
            tuple(file for file in fused if file.vector is None),
            tuple(label for label in labels if label not in known),
            tuple(kind for kind in kinds if kind not in self.scales),
        )
        made: dict[str, torch.Tensor] = {}
        if job.files or job.labels or job.kinds:
            keep = self._keep(cache)
            for event in self._events(self._open(job, estimate_seconds(self.zero_gpu, 0, kinds_to_encode(job.files)))):
                if isinstance(event, Encoded):
                    keep(event)
                elif isinstance(event, LabelEncoded):
                    made[event.label] = event.vector
                elif isinstance(event, Scales):
                    self.scales.update(event.scales)
            label_cache.keep(made, source=self.config)
        vectors = [cache.get(file.key) if file.vector is None else file.vector for file in fused]
        if not labels:
            return vectors, None, None
        outputs = torch.stack([vector * self.scales[file.kind] for file, vector in zip(fused, vectors)])
        return vectors, outputs, torch.stack([{**known, **made}[label] for label in labels])

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
        events = self._open(job, estimate_seconds(self.zero_gpu, params.max_new_tokens, kinds_to_encode(job.files), rows=len(mixes)))
        return RowStreams(events, len(mixes), self._keep(cache), self.model, engine, params).streams()

    def stream(self, conversation: Conversation, vector: PendingVector | None, params: SamplingParams, engine: MeteredEngine) -> Iterator[str]:
        """The answer's text, piece by piece, from one GPU call asking for the seconds it needs; the
        vectors it makes join the session's cache, its tokens are counted by `engine` here."""
        job = AnswerJob(conversation, vector.files if vector is not None else (), params)
        tokens = self._tokens(self._open(job, estimate_seconds(self.zero_gpu, params.max_new_tokens, kinds_to_encode(job.files))), vector)
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
        self._scales: dict[int, dict[Modality, float]] = {}  # each model's output scales, learnt from its calls
        self._lock = threading.Lock()
        self._function(handle.generation + 1)  # the first model's, decorated before launch (see the module's docstring)

    def model(self, model: PandaGPT) -> GpuModel:
        """`model` (the one served now) as this process's answers use it."""
        generation = self.handle.generation
        with self._lock:
            scales = self._scales.setdefault(generation, {})
        return GpuModel(model, self._function(generation), self.config, self.metrics, scales)

    def _function(self, generation: int) -> Callable[..., Iterator]:
        with self._lock:
            if generation not in self._functions:
                import spaces

                def answer(job: AnswerJob, grant: Grant) -> Iterator[Encoded | Refused | int]:
                    yield from self._compute(job, grant)

                answer.__name__ = f"answer_model{generation}"
                self._functions[generation] = spaces.GPU(answer, duration=lambda job, grant: grant.seconds)
            return self._functions[generation]

    def _compute(self, job: AnswerJob | LookJob | RowsJob, grant: Grant) -> Iterator[object]:
        """(In the worker.) Encode the files the session lacks (each new vector goes back), then the job's own work."""
        deadline = grant.deadline(self.config.margin_s)
        message = (
            f"This answer used up the GPU time ZeroGPU granted it (about {grant.seconds} s) and stops here. "
            "Ask for fewer new tokens, or ask PandaGPT to go on."
        )
        try:
            model, engine = self.handle.get(timeout=0)  # this worker's copy: the model served when it was forked
            vectors = yield from _vectors(model, job.files)
            if isinstance(job, AnswerJob):
                fused = model.fuse(vectors, [file.weight for file in job.files])
                yield from WithinDeadline(engine, deadline, message).generate(model.prompt_embeds(job.conversation, fused), job.params)
            elif isinstance(job, LookJob):
                yield from _look(model, job)
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
            yield Encoded(file.key, made[file.key], time.perf_counter() - started)
    return [(file.vector if file.vector is not None else made[file.key]).to(model.device) for file in files]


def _look(model: PandaGPT, job: LookJob) -> Iterator[LabelEncoded | Scales]:
    """(In the worker.) The vectors of the labels the app lacks, and ImageBind's output scales of the kinds it lacks."""
    if job.labels:
        for label, vector in zip(job.labels, model.embed_labels(job.labels)):
            yield LabelEncoded(label, vector)
    if job.kinds:
        yield Scales({kind: binding.output_scale(model.encoder, kind) for kind in job.kinds})
