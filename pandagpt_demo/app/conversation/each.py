"""An answer per input: the chat's last question answered once with each file in use alone and once
with their weighted sum (`answer_each`), or from blends of two files (`answer_blend`), greedy so the
answers can be compared, all decoded together.

Every row's prompt is submitted to the engine at once (one thread per row, each reading its own
stream), so a batching engine decodes them in one batch: n + 1 answers cost about one answer's
steps. On ZeroGPU the rows are one GPU call, decoded together there (space/gpu_rows.py). The
conversation itself is unchanged; a row that fails says why and the others go on.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch

from pandagpt_demo.config import SamplingParams
from pandagpt_demo.errors import BadInput, UserError, internal_error
from pandagpt_demo.model.conversation import Conversation
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.serving.engine import Engine

from .session import ChatSession, EncodesInItsCall, Mix, Model, RowStream

SUM = "all, weighted"  # the label of the row that answers from the weighted sum
MAX_BLEND_STEPS = 9  # rows of one blend


@dataclass(frozen=True)
class Row:
    """One answer of the table: which input it saw, its text so far, and how it ended."""

    label: str
    text: str = ""
    done: bool = False
    error: str | None = None


def answer_each(
    session: ChatSession, model: Model, engine: Engine, max_new_tokens: int, cancel: threading.Event | None = None
) -> Iterator[list[Row]]:
    """Yield every row as it changes: one per file in use (alone, weight 1), then the weighted sum.
    Set `cancel` (Stop) or stop iterating to end them all. Raises BadInput without a question or files."""
    seen, params = _prepare(session, model, max_new_tokens)
    rows = [(f"{a.name} ({a.kind.value})", ((index, 1.0),)) for index, a in enumerate(session.in_use)]
    rows.append((SUM, tuple((index, a.weight) for index, a in enumerate(session.in_use))))
    return _decode_rows(session, model, engine, seen, params, rows, cancel)


def answer_blend(
    session: ChatSession,
    model: Model,
    engine: Engine,
    max_new_tokens: int,
    pair: tuple[int, int] = (0, 1),
    steps: int = 5,
    cancel: threading.Event | None = None,
) -> Iterator[list[Row]]:
    """Multimodal arithmetic along a line: for files A and B in use (their places in the strip),
    the last question answered from a·A + (1 − a)·B at `steps` evenly spaced a from 0 to 1 (B alone
    first, A alone last), decoded together."""
    seen, params = _prepare(session, model, max_new_tokens)
    count = len(session.in_use)
    if count < 2:
        raise BadInput("Blend needs two files in use: attach another file to blend with.")
    if len(set(pair)) != 2 or not all(0 <= index < count for index in pair):
        raise BadInput(f"Blend two different files of the {count} in use (numbers 1 to {count}).")
    if not 2 <= steps <= MAX_BLEND_STEPS:
        raise BadInput(f"A blend takes 2 to {MAX_BLEND_STEPS} steps, not {steps}.")
    first, second = pair
    a, b = session.in_use[first].name, session.in_use[second].name
    weights = [index / (steps - 1) for index in range(steps)]
    rows = [(f"{w:g}·{a} + {1 - w:g}·{b}", ((first, w), (second, 1 - w))) for w in weights]
    return _decode_rows(session, model, engine, seen, params, rows, cancel)


def _prepare(session: ChatSession, model: Model, max_new_tokens: int) -> tuple[Conversation, SamplingParams]:
    """The last question's conversation fitted to the context, and greedy settings."""
    if not session.exchanges:
        raise BadInput("Ask a question first: it is answered again, once per input.")
    if not session.in_use:
        raise BadInput("No files are in use: attach files, then compare what each one makes of the question.")
    seen = session.conversation(upto=session.exchanges[-1])
    fit = model.fit(seen, True, max_new_tokens)
    return seen, SamplingParams(fit.max_new_tokens, temperature=0.0)


def _decode_rows(
    session: ChatSession,
    model: Model,
    engine: Engine,
    seen: Conversation,
    params: SamplingParams,
    rows: list[tuple[str, Mix]],
    cancel: threading.Event | None,
) -> Iterator[list[Row]]:
    """Each (label, mix of the files in use) answered; on ZeroGPU all of them in one GPU call."""
    if isinstance(model, EncodesInItsCall):
        streams = model.stream_rows(seen, session.cache, session.files_in_use(), [mix for _, mix in rows], params, engine)
    else:
        vectors = [vector for _, vector in session.vectors_in_use(model)]
        streams = [_stream_here(model, engine, seen, params, model.fuse([vectors[i] for i, _ in mix], [w for _, w in mix])) for _, mix in rows]
    return decode_together([label for label, _ in rows], streams, cancel)


def _stream_here(model: PandaGPT, engine: Engine, seen: Conversation, params: SamplingParams, vector: torch.Tensor) -> RowStream:
    return lambda stop: model.stream(seen, vector, params, engine, stop)


def decode_together(labels: list[str], streams: list[RowStream], cancel: threading.Event | None = None) -> Iterator[list[Row]]:
    """Read every row's stream at once (each started with the same stop event), yielding all rows as they change."""
    stop = cancel or threading.Event()
    changes: queue.Queue[tuple[int, Row]] = queue.Queue()

    def decode(index: int, label: str, stream: RowStream) -> None:
        row = Row(label)
        try:
            for piece in stream(stop):
                row = replace(row, text=row.text + piece)
                changes.put((index, row))
            row = replace(row, done=True)
        except UserError as error:
            row = replace(row, done=True, error=str(error))
        except Exception as error:  # noqa: BLE001 - the row says so (the fault is logged); the rest go on
            row = replace(row, done=True, error=internal_error(error))
        changes.put((index, row))

    rows = [Row(label) for label in labels]
    threads = [threading.Thread(target=decode, args=(i, label, stream), daemon=True) for i, (label, stream) in enumerate(zip(labels, streams))]
    for thread in threads:
        thread.start()
    try:
        while not all(row.done for row in rows):
            index, row = changes.get()
            rows[index] = row
            while not changes.empty():  # every change that arrived meanwhile, in one update
                index, row = changes.get_nowait()
                rows[index] = row
            yield list(rows)
    finally:
        stop.set()
