"""One user's chat: the turn logic shared by the web UI, the `/chat` API and the terminal chat.

A session owns its conversation and its embedding cache, never the model: many sessions share
one `PandaGPT`. An answer that was interrupted (Stop, a closed tab) is kept as far as it was shown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pandagpt_demo.config import SamplingParams
from pandagpt_demo.model.conversation import Conversation
from pandagpt_demo.model.modalities import Modality
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.serving.engine import Engine

from .cache import EmbeddingCache

Notify = Callable[[str], None]


def _quiet(message: str) -> None:
    """The default listener for notices (context trimmed): nobody to tell."""


@dataclass
class Inputs:
    """What the user gave besides the question: at most one file per modality, and their weights."""

    files: dict[Modality, Path] = field(default_factory=dict)
    weights: dict[Modality, float] = field(default_factory=dict)

    @classmethod
    def of(cls, files: Mapping[Modality, str | Path | None], weights: Mapping[Modality, float] | None = None) -> Inputs:
        given = {Modality(m): Path(p) for m, p in files.items() if p}
        return cls(given, {Modality(m): float(w) for m, w in (weights or {}).items()})


@dataclass(eq=False)
class _Answer:
    """The text of one answer being streamed; only its own stream writes to it."""

    text: str = ""


@dataclass
class ChatSession:
    conversation: Conversation = field(default_factory=Conversation)
    cache: EmbeddingCache = field(default_factory=EmbeddingCache)
    # The answer being streamed into the open turn. A new question, Regenerate, Undo or Clear
    # replaces it, and the stream that wrote it stops at its next piece: two requests in one
    # session never write into the same answer.
    _current: _Answer | None = None

    @classmethod
    def from_history(cls, history: list[tuple[str, str]]) -> ChatSession:
        """A session resumed from finished (question, answer) pairs, as API clients send them."""
        session = cls()
        for question, answer in history:
            session.conversation.ask(question)
            session.conversation.answer(answer)
        return session

    def _settle(self) -> None:
        """Close a turn whose streaming was interrupted, keeping what the user saw; silence its stream."""
        if self.conversation.waiting:
            self.conversation.answer(self._current.text.strip() if self._current else "")
        self._current = None

    def vector(self, model: PandaGPT, inputs: Inputs) -> torch.Tensor | None:
        """The summed projection of the given files (a bad file raises MediaError, changing nothing)."""
        return model.fuse(self.cache.vectors(inputs.files, model.embed_file), inputs.weights)

    def ask(self, model: PandaGPT, engine: Engine, question: str, inputs: Inputs, params: SamplingParams, notify: Notify = _quiet) -> Iterator[str]:
        """Stream the answer to a new question, yielding the answer so far after each piece.

        To stop early, stop iterating (close the generator): what was shown is kept as the answer.
        If answering fails (the context, a full queue, the model), the question is taken back.
        """
        self._settle()
        vector = self.vector(model, inputs)
        self.conversation.ask(question)
        return self._stream(model, engine, vector, params, notify, self._start_answer(), rollback=self.conversation.undo)

    def regenerate(self, model: PandaGPT, engine: Engine, inputs: Inputs, params: SamplingParams, notify: Notify = _quiet) -> Iterator[str]:
        """Answer the last question again (with the files and settings given now); if that fails,
        the previous answer is put back."""
        self._settle()
        vector = self.vector(model, inputs)
        turns = self.conversation.turns
        last, old_answer = (turns[-1], turns[-1].answer) if turns else (None, None)
        self.conversation.reopen()
        return self._stream(model, engine, vector, params, notify, self._start_answer(), rollback=lambda: setattr(last, "answer", old_answer))

    def _start_answer(self) -> _Answer:
        """The open turn's answer, owned from now on by the stream about to be made."""
        self._current = _Answer()
        return self._current

    def _stream(
        self,
        model: PandaGPT,
        engine: Engine,
        vector: torch.Tensor | None,
        params: SamplingParams,
        notify: Notify,
        answer: _Answer,
        rollback: Callable[[], object],
    ) -> Iterator[str]:
        """Stream into `answer` while it is still the session's current one; on failure, undo the turn."""
        seen = self.conversation.copy()  # what fits in the context; the session keeps every turn
        try:
            fit = model.fit(seen, vector is not None, params.max_new_tokens)
            if fit.dropped_turns:
                notify(f"The conversation is longer than the model's context: the oldest {fit.dropped_turns} turn(s) are left out of this answer.")
            if fit.max_new_tokens < params.max_new_tokens:
                notify(f"Only room for {fit.max_new_tokens} new tokens in the context.")
            params = SamplingParams(fit.max_new_tokens, params.top_p, params.temperature, params.seed)
            for piece in model.stream(seen, vector, params, engine):
                if self._current is not answer:
                    return  # replaced by a newer action of this session: stop decoding
                answer.text += piece
                yield answer.text
        except Exception:
            if self._current is answer:
                self._current = None
                rollback()
            raise
        if self._current is answer:
            self._settle()

    def undo(self) -> str | None:
        """Remove the last turn; returns its question so the user can edit and resend it."""
        self._settle()
        turn = self.conversation.undo()
        return turn.question if turn else None

    def clear(self) -> None:
        self._settle()
        self.conversation.turns.clear()
        self.cache.clear()

    def messages(self) -> list[dict[str, str]]:
        """The chat in the messages format of `gr.Chatbot`, including an answer being streamed."""
        result: list[dict[str, str]] = []
        for turn in self.conversation.turns:
            result.append({"role": "user", "content": turn.question})
            if turn.answer is not None:
                result.append({"role": "assistant", "content": turn.answer})
            elif self._current is not None and self._current.text:
                result.append({"role": "assistant", "content": self._current.text})
        return result
