"""What an operator of a public link watches, counted and timed (served in Prometheus' text format
at `GET /metrics`, api/monitoring.py).

Every endpoint that answers (the page, `/chat` and MCP, `/v1/chat/completions`) counts its requests
and its errors by kind here; the engine and the encoder are timed through thin wrappers
(`served`), so every path is measured the same way. Gauges (queue depth, active rows, the model
loaded, sessions, upload bytes) are read when Prometheus scrapes. Each app has its own registry:
no global state, and tests can run several apps in one process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import torch
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from pandagpt_demo import errors
from pandagpt_demo.app.public.housekeeping import Housekeeping
from pandagpt_demo.app.runtime import ModelHandle
from pandagpt_demo.config import SamplingParams
from pandagpt_demo.model.modalities import Modality
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.serving.engine import Engine, EngineStats

# "chat" is /chat, for gradio_client and the MCP tool alike; "page_*" are the page's ImageBind panel and its answer tables
ENDPOINTS = ("page", "chat", "openai", "imagebind_view", "answer_each", "answer_blend", "page_view", "page_each", "page_blend")
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
TOKEN_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2)


def error_kind(error: BaseException) -> str:
    """A label for an error: the user error's kind in snake case (`bad_input`, `busy`, ...), `zerogpu`
    for Gradio's own `Error` (beneath the handlers only `spaces` raises one: a visitor's quota, a
    task it aborted), or `internal`."""
    if isinstance(error, gr.Error):
        return "zerogpu"
    if not isinstance(error, errors.UserError):
        return "internal"
    kind = next(c for c in type(error).__mro__ if c.__module__ == errors.__name__)
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in kind.__name__).lstrip("_")


class Metrics:
    """The app's counters and histograms, and the scrape-time gauges of `handle` and `house`."""

    def __init__(self, handle: ModelHandle, house: Housekeeping) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("pandagpt_requests", "Answering requests, by endpoint", ["endpoint"], registry=self.registry)
        self.errors = Counter("pandagpt_errors", "Answering requests that failed, by endpoint and kind", ["endpoint", "kind"], registry=self.registry)
        self.tokens = Counter("pandagpt_generated_tokens", "Tokens decoded and handed to answers", registry=self.registry)
        self.first_token = Histogram(
            "pandagpt_time_to_first_token_seconds", "From a prompt's submission to its first token", buckets=LATENCY_BUCKETS, registry=self.registry
        )
        self.per_token = Histogram(
            "pandagpt_time_per_output_token_seconds", "Between one token of an answer and the next", buckets=TOKEN_BUCKETS, registry=self.registry
        )
        self.encode = Histogram(
            "pandagpt_encode_seconds",
            "Encoding one file (load, ImageBind, projection)",
            ["modality"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        for endpoint in ENDPOINTS:  # every series exists from the start, at 0
            self.requests.labels(endpoint)
        for modality in Modality:
            self.encode.labels(modality.value)
        self.registry.register(_LoadCollector(handle, house))

    def started(self, endpoint: str) -> None:
        self.requests.labels(endpoint).inc()

    def failed(self, endpoint: str, kind: str) -> None:
        """Count a failed request; `kind` is `error_kind(error)` or an HTTP refusal's code."""
        self.errors.labels(endpoint, kind).inc()

    def encoded(self, modality: Modality, seconds: float) -> None:
        """One file encoded (here, or in a ZeroGPU call that said how long it took)."""
        self.encode.labels(Modality(modality).value).observe(seconds)

    def served(self, model: PandaGPT, engine: Engine) -> tuple[PandaGPT, Engine]:
        """`model` and `engine` as one request uses them, timed into these metrics."""
        return _TimedModel(model, self), MeteredEngine(engine, self)  # type: ignore[return-value]


class MeteredEngine:
    """An engine whose every request is timed (first token, each next one) and counted; it also
    keeps the last request's token counts, for an API's `usage`."""

    def __init__(self, inner: Engine, metrics: Metrics | None = None) -> None:
        self.inner = inner
        self.metrics = metrics
        self.prompt_tokens = 0  # positions of the last prompt (the fused vector counts as one)
        self.completion_tokens = 0
        self.max_new_tokens = 0  # the last request's limit, after fitting the context
        self.exhausted = False  # whether the last request's tokens ran out (EOS or the limit) rather than being stopped

    def generate(self, embeds: torch.Tensor, params: SamplingParams, cancel: threading.Event | None = None) -> Iterator[int]:
        self.prompt_tokens, self.completion_tokens, self.max_new_tokens, self.exhausted = embeds.shape[1], 0, params.max_new_tokens, False
        return self._timed(self.inner.generate(embeds, params, cancel))

    def relay(self, tokens: Iterator[int], params: SamplingParams) -> Iterator[int]:
        """Tokens decoded elsewhere (a ZeroGPU call, from a prompt built there), timed and counted here
        as they arrive; `prompt_tokens` stays 0."""
        self.prompt_tokens, self.completion_tokens, self.max_new_tokens, self.exhausted = 0, 0, params.max_new_tokens, False
        return self._timed(tokens)

    def _timed(self, tokens: Iterator[int]) -> Iterator[int]:
        last = time.perf_counter()
        for token in tokens:
            now = time.perf_counter()
            if self.metrics is not None:
                (self.metrics.first_token if self.completion_tokens == 0 else self.metrics.per_token).observe(now - last)
                self.metrics.tokens.inc()
            self.completion_tokens += 1
            last = now
            yield token
        self.exhausted = True

    @property
    def finish_reason(self) -> str:
        """OpenAI's word for how the last answer ended: `length` when it used all its tokens."""
        return "length" if self.exhausted and self.completion_tokens >= self.max_new_tokens else "stop"

    def close(self) -> None:
        self.inner.close()

    @property
    def ready(self) -> bool:
        return self.inner.ready

    def stats(self) -> EngineStats:
        return self.inner.stats()


class _TimedModel:
    """A PandaGPT whose file encodings are timed per modality; everything else is the model's own."""

    def __init__(self, model: PandaGPT, metrics: Metrics) -> None:
        self._model = model
        self._metrics = metrics

    def __getattr__(self, name: str) -> object:
        return getattr(self._model, name)

    def embed_file(self, modality: Modality, path: str | Path) -> torch.Tensor:
        started = time.perf_counter()
        try:
            return self._model.embed_file(modality, path)
        finally:
            self._metrics.encoded(modality, time.perf_counter() - started)


class _LoadCollector:
    """Gauges read at scrape time: the model loaded, the engine's queue and rows, sessions, uploads."""

    def __init__(self, handle: ModelHandle, house: Housekeeping) -> None:
        self.handle = handle
        self.house = house

    def collect(self) -> Iterator[object]:
        stats = self.handle.stats()
        yield _gauge("pandagpt_model_loaded", "1 once the model is loaded and its engine runs", float(self.handle.ready))
        yield _gauge("pandagpt_queue_depth", "Requests waiting for a row of the batch", stats.waiting if stats else 0)
        yield _gauge("pandagpt_active_rows", "Answers decoding now", stats.active if stats else 0)
        steps = CounterMetricFamily("pandagpt_decode_steps", "Decode steps (each decodes a token for every active row)")
        steps.add_metric([], stats.steps if stats else 0)
        yield steps
        yield _gauge("pandagpt_answers_in_flight", "Answering requests running now, every endpoint", self.house.lifecycle.in_flight)
        yield _gauge("pandagpt_sessions", "Live chat sessions (tabs and clients)", len(self.house.sessions))
        yield _gauge("pandagpt_upload_bytes", "Bytes in the upload folder counted against its budget", self.house.uploads.usage())
        replicas = self.handle.replica_status()
        if replicas is not None:
            yield _gauge("pandagpt_replicas_ready", "Model replicas running and healthy (Ray Serve)", replicas.ready)
            yield _gauge("pandagpt_replicas_total", "Model replicas wanted (Ray Serve)", replicas.total)
            answers = CounterMetricFamily("pandagpt_replica_answers", "Answers each replica started", labels=["replica"])
            for replica, count in self.handle.served_by().items():
                answers.add_metric([replica], count)
            yield answers


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
