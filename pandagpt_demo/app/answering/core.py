"""The small core every answering endpoint shares: the page, `/chat` and its MCP tool, and `/v1`.

One answer needs the model and engine served now, timed into the metrics; on a ZeroGPU Space the
model is wrapped so that the answer is one GPU call (the server passes that wrapper in: nothing
here knows of Spaces). It needs the housekeeping that holds its files while it runs and refuses
it while the app drains, the ranges its settings are held to, and a count of it by endpoint, with
the kind of error it ended in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from pandagpt_demo.app.conversation.session import Model
from pandagpt_demo.app.public.housekeeping import Housekeeping
from pandagpt_demo.app.runtime import ModelHandle
from pandagpt_demo.errors import first_line
from pandagpt_demo.model.binding import LabelVectors
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.serving.engine import Engine

from .intakes import Intakes
from .metrics import Metrics, error_kind
from .settings import AnswerSettings

log = logging.getLogger(__name__)


class Answering:
    """The model handle, housekeeping, metrics and settings of one app, as its endpoints use them."""

    def __init__(
        self,
        handle: ModelHandle,
        house: Housekeeping,
        metrics: Metrics,
        settings: AnswerSettings,
        in_gpu_call: Callable[[PandaGPT], Model] | None = None,
    ) -> None:
        """`in_gpu_call` (ZeroGPU only) turns the served model into one whose answers are GPU calls."""
        self.handle = handle
        self.house = house
        self.metrics = metrics
        self.settings = settings
        self.in_gpu_call = in_gpu_call
        self.labels = LabelVectors()  # ImageBind's vectors of the labels users ask about, shared by every endpoint
        self.intakes = Intakes()  # what ImageBind takes in from each file, shared alike

    def served(self) -> tuple[Model, Engine]:
        """The model and engine one answer uses, measured; Unavailable while none is loaded."""
        model, engine = self.metrics.served(*self.handle.get(timeout=0))
        return (self.in_gpu_call(model) if self.in_gpu_call is not None else model), engine

    @contextmanager
    def counted(self, endpoint: str, who: str) -> Iterator[None]:
        """Count one request of `endpoint` from `who` (a session or request id), and its failure by
        kind if an error leaves the block."""
        self.metrics.started(endpoint)
        try:
            yield
        except Exception as error:
            self.failed(endpoint, error_kind(error), who, error)
            raise

    def failed(self, endpoint: str, kind: str, who: str, error: BaseException) -> None:
        """Count a failed request by kind. A refusal (any kind but `internal`) is one log line: the
        endpoint, who, the kind and what they were told, never a traceback; an internal fault is
        logged with its traceback where it becomes a message (errors.internal_error)."""
        self.metrics.failed(endpoint, kind)
        if kind != "internal":
            log.info("refused %s request of %s (%s): %s", endpoint, who, kind, first_line(error))
