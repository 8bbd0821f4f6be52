"""One user's chat: the turn logic shared by the web UI, the `/chat` API and the terminal chat.

A session owns its conversation and its embedding cache, never the model: many sessions share
one `PandaGPT`. An answer that was interrupted (Stop, a closed tab) is kept as far as it was shown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .cache import EmbeddingCache
from .config import SamplingParams
from .conversation import Conversation
from .modalities import Modality
from .model import PandaGPT

Notify = Callable[[str], None]


def _quiet(message: str) -> None:
    """The default listener for notices (context trimmed): nobody to tell."""


@dataclass
class Inputs:
    """What the user gave besides the question: at most one file per modality, and their weights."""

    files: dict[Modality, Path] = field(default_factory=dict)
    weights: dict[Modality, float] = field(default_factory=dict)

    @classmethod
    def of(cls, files: Mapping[Modality, str | Path | None], weights: Mapping[Modality, float] | None = None) -> "Inputs":
        given = {Modality(m): Path(p) for m, p in files.items() if p}
        return cls(given, {Modality(m): float(w) for m, w in (weights or {}).items()})


@dataclass
class ChatSession:
    conversation: Conversation = field(default_factory=Conversation)
    cache: EmbeddingCache = field(default_factory=EmbeddingCache)
    _shown: str = ""  # the streamed part of an answer still being written

    @classmethod
    def from_history(cls, history: list[tuple[str, str]]) -> "ChatSession":
        """A session resumed from finished (question, answer) pairs, as API clients send them."""
        session = cls()
        for question, answer in history:
            session.conversation.ask(question)
            session.conversation.answer(answer)
        return session

    def _settle(self) -> None:
        """Close a turn whose streaming was interrupted, keeping what the user saw."""
        if self.conversation.waiting:
            self.conversation.answer(self._shown.strip())
        self._shown = ""

    def vector(self, model: PandaGPT, inputs: Inputs) -> torch.Tensor | None:
        """The summed projection of the given files (a bad file raises MediaError, changing nothing)."""
        return model.fuse(self.cache.vectors(inputs.files, model.embed_file), inputs.weights)

    def ask(self, model: PandaGPT, question: str, inputs: Inputs, params: SamplingParams, notify: Notify = _quiet) -> Iterator[str]:
        """Stream the answer to a new question, yielding the answer so far after each piece.

        To stop early, stop iterating (close the generator): what was shown is kept as the answer.
        """
        return self._respond(model, inputs, params, notify, lambda conversation: conversation.ask(question))

    def regenerate(self, model: PandaGPT, inputs: Inputs, params: SamplingParams, notify: Notify = _quiet) -> Iterator[str]:
        """Answer the last question again (with the files and settings given now)."""
        return self._respond(model, inputs, params, notify, Conversation.reopen)

    def _respond(
        self, model: PandaGPT, inputs: Inputs, params: SamplingParams, notify: Notify, open_turn: Callable[[Conversation], None]
    ) -> Iterator[str]:
        """Encode the files (a bad one raises here, before anything changes), open the turn, stream."""
        self._settle()
        vector = self.vector(model, inputs)
        open_turn(self.conversation)
        return self._stream(model, vector, params, notify)

    def _stream(self, model: PandaGPT, vector: torch.Tensor | None, params: SamplingParams, notify: Notify) -> Iterator[str]:
        seen = self.conversation.copy()  # what fits in the context; the session keeps every turn
        try:
            fit = model.fit(seen, vector is not None, params.max_new_tokens)
        except ValueError:
            self.conversation.undo()
            raise
        if fit.dropped_turns:
            notify(f"The conversation is longer than the model's context: the oldest {fit.dropped_turns} turn(s) are left out of this answer.")
        if fit.max_new_tokens < params.max_new_tokens:
            notify(f"Only room for {fit.max_new_tokens} new tokens in the context.")
        params = SamplingParams(fit.max_new_tokens, params.top_p, params.temperature, params.seed)
        for piece in model.stream(seen, vector, params):
            self._shown += piece
            yield self._shown
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
            answer = turn.answer if turn.answer is not None else self._shown
            if answer or turn.answer is not None:
                result.append({"role": "assistant", "content": answer})
        return result
