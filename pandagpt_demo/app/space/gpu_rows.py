"""An answer table on ZeroGPU: every row decoded together inside one GPU call, and its tokens sorted
back into one stream per row here.

In the call (`decode_rows`): a batching decoder of the call's own (eager: nothing to compile for
one call) takes every row's prompt at once; one reader thread per row watches its row's text and
ends it at the stop text, as an answer here would, and each token goes out as `RowToken`, each
end as `RowEnd`. Here (`RowStreams`): one thread reads the call and hands each row's tokens to its
stream; the stop event every row watches (Stop, or the table no longer read) closes the call.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import closing

import torch

from pandagpt_demo.app.answering.metrics import MeteredEngine
from pandagpt_demo.app.conversation.session import RowStream
from pandagpt_demo.config import SamplingParams
from pandagpt_demo.errors import UserError
from pandagpt_demo.model.generation import stream_text
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.serving.batching import BatchedDecoder
from pandagpt_demo.serving.deadlines import WithinDeadline

from .gpu_jobs import Encoded, Refused, RowEnd, RowsJob, RowToken

_END = object()


def decode_rows(model: PandaGPT, vectors: list[torch.Tensor], job: RowsJob, deadline: float, message: str) -> Iterator[RowToken | RowEnd]:
    """(In the call.) Every row's tokens as they are decoded, all rows in one batch; a row past
    `deadline` ends with TimedOut(`message`), its tokens so far kept."""
    prompts = [model.prompt_embeds(job.conversation, model.fuse([vectors[i] for i, _ in mix], [w for _, w in mix])) for mix in job.mixes]
    decoder = BatchedDecoder(
        model.llm, model.tokenizer.eos_token_id, max_batch=len(prompts), max_waiting=len(prompts), stall_timeout=None, answer_timeout=None
    )
    engine = WithinDeadline(decoder, deadline, message)
    events: queue.Queue[RowToken | RowEnd | BaseException] = queue.Queue()
    stop = threading.Event()

    def read(row: int, embeds: torch.Tensor) -> None:
        def tapped(tokens: Iterator[int]) -> Iterator[int]:
            for token in tokens:
                events.put(RowToken(row, token))
                yield token

        try:
            with closing(engine.generate(embeds, job.params, stop)) as tokens:
                for _ in stream_text(model.tokenizer, tapped(tokens), model.config.spec.prompt.stop_text):
                    pass  # the text is made again here, from the same tokens; this only finds where it stops
            events.put(RowEnd(row))
        except UserError as error:
            events.put(RowEnd(row, error))
        except Exception as error:  # noqa: BLE001 - raised in the call below, which hands it back
            events.put(error)

    threads = [threading.Thread(target=read, args=(row, embeds), name=f"row-{row}", daemon=True) for row, embeds in enumerate(prompts)]
    for thread in threads:
        thread.start()
    try:
        ended = 0
        while ended < len(prompts):
            event = events.get()
            if isinstance(event, BaseException):
                raise event
            ended += isinstance(event, RowEnd)
            yield event
    finally:
        stop.set()  # the caller closed the call, or a fault: every row leaves the batch
        decoder.close()


class RowStreams:
    """(Here.) The call's events sorted into one token stream per row; `Encoded` vectors go to `keep`."""

    def __init__(
        self,
        events: Iterator[Encoded | Refused | RowToken | RowEnd],
        rows: int,
        keep: Callable[[Encoded], None],
        model: PandaGPT,
        engine: MeteredEngine,
        params: SamplingParams,
    ) -> None:
        self._events = events
        self._queues: list[queue.Queue[int | object | BaseException]] = [queue.Queue() for _ in range(rows)]
        self._keep = keep
        self._model = model
        self._engine = engine
        self._params = params
        self._started = False
        self._lock = threading.Lock()

    def streams(self) -> list[RowStream]:
        """Each row's answer text, piece by piece, as `ChatSession` answers are made (the same stop text)."""
        stop_text = self._model.config.spec.prompt.stop_text
        return [
            lambda stop, row=row: stream_text(self._model.tokenizer, self._engine.relay(self._tokens(row, stop), self._params), stop_text)
            for row in range(len(self._queues))
        ]

    def _tokens(self, row: int, stop: threading.Event) -> Iterator[int]:
        with self._lock:
            if not self._started:
                self._started = True
                threading.Thread(target=self._read, args=(stop,), name="gpu-rows", daemon=True).start()
        while (item := self._queues[row].get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item

    def _read(self, stop: threading.Event) -> None:
        """Read the call until it ends or `stop` is set (closing it stops the call); every row ends."""
        ended: set[int] = set()
        try:
            with closing(self._events):
                for event in self._events:
                    if isinstance(event, Encoded):
                        self._keep(event)
                    elif isinstance(event, RowToken):
                        self._queues[event.row].put(event.token)
                    elif isinstance(event, RowEnd):
                        ended.add(event.row)
                        self._queues[event.row].put(event.refused if event.refused is not None else _END)
                    elif isinstance(event, Refused):
                        raise event.error
                    if stop.is_set():
                        break
        except Exception as error:  # noqa: BLE001 - a user's error, or the call failing: each row still open hears it
            for row, rows in enumerate(self._queues):
                if row not in ended:
                    rows.put(error)
                    ended.add(row)
        finally:
            for row, rows in enumerate(self._queues):
                if row not in ended:
                    rows.put(_END)
