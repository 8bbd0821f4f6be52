"""An answer per input: the chat's last question answered once with each file in use alone and once
with their weighted sum (`answer_each`), or from blends of two files (`answer_blend`), greedy so the
answers can be compared, all decoded together.

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
from pandagpt_demo.model.conversation import Conversation
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.serving.engine import Engine

from .chatlog import Attachment
from .session import ChatSession, EncodesInItsCall

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
    session: ChatSession, model: PandaGPT, engine: Engine, max_new_tokens: int, cancel: threading.Event | None = None
) -> Iterator[list[Row]]:
    """Yield every row as it changes: one per file in use (alone, weight 1), then the weighted sum.
    Set `cancel` (Stop) or stop iterating to end them all. Raises BadInput without a question or
    files, Unavailable for a model that encodes only inside its own GPU calls (ZeroGPU)."""
    seen, params, in_use = _prepare(session, model, max_new_tokens)
    prompts = [(f"{a.name} ({a.kind.value})", model.fuse([vector])) for a, vector in in_use]
    prompts.append((SUM, model.fuse([v for _, v in in_use], [a.weight for a, _ in in_use])))
    return decode_together(model, engine, seen, params, prompts, cancel)


def answer_blend(
    session: ChatSession,
    model: PandaGPT,
    engine: Engine,
    max_new_tokens: int,
    pair: tuple[int, int] = (0, 1),
    steps: int = 5,
    cancel: threading.Event | None = None,
) -> Iterator[list[Row]]:
    """Multimodal arithmetic along a line: for files A and B in use (their places in the strip),
    the last question answered from a·A + (1 − a)·B at `steps` evenly spaced a from 0 to 1 (B alone
    first, A alone last), decoded together."""
    seen, params, in_use = _prepare(session, model, max_new_tokens)
    if len(in_use) < 2:
        raise BadInput("Blend needs two files in use: attach another file to blend with.")
    if len(set(pair)) != 2 or not all(0 <= index < len(in_use) for index in pair):
        raise BadInput(f"Blend two different files of the {len(in_use)} in use (numbers 1 to {len(in_use)}).")
    if not 2 <= steps <= MAX_BLEND_STEPS:
        raise BadInput(f"A blend takes 2 to {MAX_BLEND_STEPS} steps, not {steps}.")
    (a, first), (b, second) = (in_use[index] for index in pair)
    weights = [index / (steps - 1) for index in range(steps)]
    prompts = [(f"{w:g}·{a.name} + {1 - w:g}·{b.name}", model.fuse([first, second], [w, 1 - w])) for w in weights]
    return decode_together(model, engine, seen, params, prompts, cancel)


def _prepare(
    session: ChatSession, model: PandaGPT, max_new_tokens: int
) -> tuple[Conversation, SamplingParams, list[tuple[Attachment, torch.Tensor]]]:
    """The last question's conversation fitted to the context, greedy settings, and the vectors in use."""
    if isinstance(model, EncodesInItsCall):
        raise Unavailable("Answering per input needs ImageBind in the app's own process; it is not available here yet.")
    if not session.exchanges:
        raise BadInput("Ask a question first: it is answered again, once per input.")
    if not session.in_use:
        raise BadInput("No files are in use: attach files, then compare what each one makes of the question.")
    seen = session.conversation(upto=session.exchanges[-1])
    fit = model.fit(seen, True, max_new_tokens)
    return seen, SamplingParams(fit.max_new_tokens, temperature=0.0), session.vectors_in_use(model)


def decode_together(
    model: PandaGPT,
    engine: Engine,
    seen: Conversation,
    params: SamplingParams,
    prompts: list[tuple[str, torch.Tensor]],
    cancel: threading.Event | None = None,
) -> Iterator[list[Row]]:
    """Stream the answer to `seen` from each (label, vector) at once, yielding all rows as they change."""
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
