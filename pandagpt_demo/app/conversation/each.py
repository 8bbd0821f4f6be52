"""An answer per input: the chat's last question answered once with each file in use alone and once
with their weighted sum, greedy so the answers can be compared, all decoded together.

Every row's prompt is submitted to the engine at once (one thread per row, each reading its own
stream), so a batching engine decodes them in one batch: n + 1 answers cost about one answer's
steps. The conversation itself is unchanged; a row that fails says why and the others go on.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch

from pandagpt_demo.config import SamplingParams
from pandagpt_demo.errors import BadInput, Unavailable, UserError, internal_error
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.serving.engine import Engine

from .session import ChatSession, EncodesInItsCall

SUM = "all, weighted"  # the label of the row that answers from the weighted sum


@dataclass(frozen=True)
class Row:
    """One answer of the table: which input it saw, its text so far, and how it ended."""

    label: str
    text: str = ""
    done: bool = False
    error: str | None = None


def answer_each(
    session: ChatSession, model: PandaGPT, engine: Engine, max_new_tokens: int, cancel: threading.Event | None = None
) -> Iterator[list[Row]]:
    """Yield every row as it changes: one per file in use (alone, weight 1), then the weighted sum.
    Set `cancel` (Stop) or stop iterating to end them all. Raises BadInput without a question or
    files, Unavailable for a model that encodes only inside its own GPU calls (ZeroGPU)."""
    if isinstance(model, EncodesInItsCall):
        raise Unavailable("Answer each needs ImageBind in the app's own process; it is not available here yet.")
    if not session.exchanges:
        raise BadInput("Ask a question first: Answer each answers the last question again, once per file.")
    if not session.in_use:
        raise BadInput("No files are in use: attach files, then Answer each compares what each one makes of the question.")
    seen = session.conversation(upto=session.exchanges[-1])
    fit = model.fit(seen, True, max_new_tokens)
    params = SamplingParams(fit.max_new_tokens, temperature=0.0)
    in_use = session.vectors_in_use(model)
    prompts = [(f"{a.name} ({a.kind.value})", model.fuse([vector])) for a, vector in in_use]
    prompts.append((SUM, model.fuse([v for _, v in in_use], [a.weight for a, _ in in_use])))
    stop = cancel or threading.Event()
    changes: queue.Queue[tuple[int, Row]] = queue.Queue()

    def decode(index: int, label: str, vector: torch.Tensor) -> None:
        row = Row(label)
        try:
            for piece in model.stream(seen, vector, params, engine, stop):
                row = replace(row, text=row.text + piece)
                changes.put((index, row))
            row = replace(row, done=True)
        except UserError as error:
            row = replace(row, done=True, error=str(error))
        except Exception as error:  # noqa: BLE001 - the row says so (the fault is logged); the rest go on
            row = replace(row, done=True, error=internal_error(error))
        changes.put((index, row))

    rows = [Row(label) for label, _ in prompts]
    threads = [threading.Thread(target=decode, args=(i, label, vector), daemon=True) for i, (label, vector) in enumerate(prompts)]
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
