"""One user's chat: the turn logic shared by the web UI, the `/chat` API and the terminal chat.

A session owns its conversation and its embedding cache, never the model: many sessions share
one `PandaGPT`. An answer that was interrupted (Stop, a closed tab) is kept as far as it was shown.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from pandagpt_demo.config import PromptTemplate, SamplingParams
from pandagpt_demo.errors import BadInput, UserError
from pandagpt_demo.model.binding import LabelVectors
from pandagpt_demo.model.conversation import Conversation, Turn
from pandagpt_demo.model.modalities import MediaError, Modality
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.serving.engine import Engine

from .chatlog import Attachment, Exchange, Used, Version, from_record, record_of
from .embeddings import EmbeddingCache

Notify = Callable[[str], None]
Vector = object  # the fused tensor, or what an EncodesInItsCall model's `pending` made of the files
Mix = tuple[tuple[int, float], ...]  # a row's files: (index among those given, weight) pairs
RowStream = Callable[[threading.Event], Iterator[str]]  # a row's answer, piece by piece, until the event is set
Show = Callable[[Attachment], dict | None]  # a file as a chat message's content item (a preview), or None


@runtime_checkable
class EncodesInItsCall(Protocol):
    """A model that makes an answer's vector in the same call that decodes it (zerogpu.GpuModel: one
    ZeroGPU call per answer). The session gives it the files and its cache instead of vectors, and
    passes on whatever `pending` returns as the vector. ImageBind's view (`look`) and the rows of
    an answer table (`stream_rows`, each row a mix of the files: (index, weight) pairs) are one
    call each too; the vectors they make join `cache`."""

    def pending(self, cache: EmbeddingCache, files: Sequence[tuple[Modality, Path]], weights: Sequence[float]) -> object | None: ...

    def look(
        self, cache: EmbeddingCache, files: Sequence[tuple[Modality, Path]], labels: Sequence[str], label_cache: LabelVectors
    ) -> tuple[list[torch.Tensor], torch.Tensor | None, torch.Tensor | None]: ...

    def stream_rows(
        self,
        conversation: Conversation,
        cache: EmbeddingCache,
        files: Sequence[tuple[Modality, Path]],
        mixes: Sequence[Mix],
        params: SamplingParams,
        engine: Engine,
    ) -> list[RowStream]: ...


Model = PandaGPT | EncodesInItsCall  # what answers: the model itself, or (ZeroGPU) one that encodes in its call


def _quiet(message: str) -> None:
    """The default listener for notices (context trimmed): nobody to tell."""


def _unshown(attachment: Attachment) -> None:
    """The default `Show`: files are not part of the messages (text-only callers)."""


def _on_server(attachments: Sequence[Attachment]) -> list[tuple[Modality, Path]]:
    """Each file's (kind, server path); one known by name only (after a reload) raises MediaError."""
    for attachment in attachments:
        if attachment.path is None:
            raise MediaError(attachment.kind, attachment.name, "it is no longer on the server; please attach it again")
    return [(a.kind, a.path) for a in attachments]


@dataclass(eq=False)
class _Answer:
    """The text of one answer being streamed into `exchange`; only its own stream writes to it."""

    exchange: Exchange
    used: tuple[Used, ...]
    text: str = ""


@dataclass
class ChatSession:
    """The exchanges of one chat and its "in use" files: everything attached so far, unless
    removed, each with its kind and weight. The in-use files are the one place where the vector
    of the next answer is decided; each answer records the files and weights it was given."""

    exchanges: list[Exchange] = field(default_factory=list)
    in_use: list[Attachment] = field(default_factory=list)
    pending: list[Attachment] = field(default_factory=list)  # in the message box, not sent yet
    record_file: Path | None = None  # the page's latest export of this chat
    cache: EmbeddingCache = field(default_factory=EmbeddingCache)
    template: PromptTemplate = field(default_factory=PromptTemplate)
    # The answer being streamed. A new question, Regenerate, an edit, Undo or Clear replaces it,
    # and the stream that wrote it stops at its next piece: two requests in one session never
    # write into the same answer.
    _current: _Answer | None = None

    @classmethod
    def from_history(cls, history: list[tuple[str, str]]) -> ChatSession:
        """A session resumed from finished (question, answer) pairs, as API clients send them."""
        return cls([Exchange(question, versions=[Version(answer)]) for question, answer in history])

    @classmethod
    def from_record(cls, record: object, find: Callable[[str], Path | None]) -> ChatSession:
        """A session resumed from its record (chatlog.py); `find` gives the server's copy of a file by
        sha256, if it still has one. Files it lacks stay known by name until attached again."""
        exchanges, in_use, _ = from_record(record)
        session = cls(exchanges, in_use)
        for attachment in session.attachments():
            attachment.path = find(attachment.sha256)
        return session

    def record(self, settings: dict) -> dict:
        self._settle()
        return record_of(self.exchanges, self.in_use, settings)

    # --- files ----------------------------------------------------------------------------------

    def attachments(self) -> list[Attachment]:
        """Every file of the chat (attached to a message or in use), each once."""
        seen: list[Attachment] = []
        for attachment in [a for e in self.exchanges for a in e.attached] + self.in_use + self.pending:
            if attachment not in seen:
                seen.append(attachment)
        return seen

    def files(self) -> list[Path]:
        """The server files this chat refers to: what the upload janitor must keep."""
        return [a.path for a in self.attachments() if a.path is not None]

    def missing(self) -> list[Attachment]:
        """Files known by name only (after a reload or an import), to be attached again."""
        return [a for a in self.attachments() if a.path is None]

    def supply(self, attachment: Attachment) -> bool:
        """Give back a missing file: every one with this content gets its path. Whether any matched."""
        matched = [a for a in self.missing() if a.sha256 == attachment.sha256]
        for a in matched:
            a.path = attachment.path
        return bool(matched)

    def remove(self, attachment: Attachment) -> None:
        """Stop using a file for the next answers (it stays shown in the message it came with)."""
        self.in_use = [a for a in self.in_use if a is not attachment]

    def hear(self, video: Attachment, weight: float = 1.0) -> Attachment:
        """Add a video's sound track as an input of its own, right after the video, wherever the
        video is (the message box or in use); a video heard already keeps its one sound track. A
        MediaError if the video has no sound."""
        for files in (self.pending, self.in_use):
            if any(a is video for a in files):
                track = next((a for a in files if a.sound_of_video and a.sha256 == video.sha256), None)
                if track is None:
                    track = video.sound_track(weight)
                    files.insert(files.index(video) + 1, track)
                return track
        raise BadInput(f"'{video.name}' is not among the files in the message box or in use.")

    def _fuse(self, model: Model, strip: list[Attachment]) -> tuple[Vector | None, tuple[Used, ...]]:
        """The weighted sum of these files' projections (or what a model that encodes in its own call
        makes of them) and what it was made of; a bad file raises MediaError, changing nothing."""
        files, weights = _on_server(strip), [a.weight for a in strip]
        if isinstance(model, EncodesInItsCall):
            vector = model.pending(self.cache, files, weights)
        else:
            vector = model.fuse(self.cache.vectors(files, model.embed_file, source=model.config), weights)
        return vector, tuple(Used.of(a) for a in strip)

    def files_in_use(self) -> list[tuple[Modality, Path]]:
        """(kind, server path) of each file in use; one known by name only raises MediaError."""
        return _on_server(self.in_use)

    def vectors_in_use(self, model: PandaGPT) -> list[tuple[Attachment, torch.Tensor]]:
        """ImageBind's vector of each file in use, from the cache the answers fill (a file an answer
        used is not encoded again; one not yet used is encoded and kept for the next answer)."""
        vectors = self.cache.vectors(self.files_in_use(), model.embed_file, source=model.config)
        return list(zip(self.in_use, vectors))

    # --- answering ------------------------------------------------------------------------------

    def _settle(self) -> None:
        """Close an answer whose streaming was interrupted, keeping what the user saw; silence its stream.
        A regenerated answer interrupted before any text leaves the versions as they were."""
        current, self._current = self._current, None
        if current is not None and (current.text.strip() or not current.exchange.versions):
            current.exchange.add(Version(current.text.strip(), current.used))

    def conversation(self, upto: Exchange | None = None) -> Conversation:
        """The prompt's turns: each exchange with the answer version shown; `upto` and those after it
        are left out, and `upto` comes last as the open question."""
        turns = []
        for exchange in self.exchanges:
            if exchange is upto:
                turns.append(Turn(exchange.question))
                break
            turns.append(Turn(exchange.question, exchange.answer.text if exchange.answer else ""))
        return Conversation(self.template, turns)

    def ask(
        self,
        model: Model,
        engine: Engine,
        question: str,
        params: SamplingParams,
        notify: Notify = _quiet,
        attached: Sequence[Attachment] = (),
    ) -> Iterator[str]:
        """Stream the answer to a new question with `attached` files, yielding the answer so far.

        The attached files join those in use (one already in use, same content and kind, keeps its
        place and weight). To stop early, stop iterating: what was shown is kept
        as the answer. If answering fails (a file, the context, a full queue, the model), the
        question is taken back and the files in use are as before.
        """
        self._settle()
        strip = list(self.in_use)
        for attachment in attached:  # the same file sent again as the same kind is not counted twice
            if not any(a is attachment or (a.sha256, a.kind) == (attachment.sha256, attachment.kind) for a in strip):
                strip.append(attachment)
        vector, used = self._fuse(model, strip)
        return self._open(model, engine, Exchange(question, list(attached)), self.exchanges, strip, vector, used, params, notify)

    def edit(self, model: Model, engine: Engine, index: int, question: str, params: SamplingParams, notify: Notify = _quiet) -> Iterator[str]:
        """Ask exchange `index` again as `question` and answer it; the later exchanges go, and so do
        the files attached only to them."""
        self._settle()
        if not 0 <= index < len(self.exchanges):
            raise BadInput(f"There is no question {index + 1} to edit.")
        edited, later = self.exchanges[index], self.exchanges[index + 1 :]
        dropped = [a for e in later for a in e.attached]
        strip = [a for a in self.in_use if a not in dropped]
        vector, used = self._fuse(model, strip)
        return self._open(model, engine, Exchange(question, edited.attached), self.exchanges[:index], strip, vector, used, params, notify)

    def _open(
        self,
        model: Model,
        engine: Engine,
        exchange: Exchange,
        before: list[Exchange],
        strip: list[Attachment],
        vector: Vector | None,
        used: tuple[Used, ...],
        params: SamplingParams,
        notify: Notify,
    ) -> Iterator[str]:
        """Make `exchange` the last one after `before`, with `strip` in use, and stream its answer;
        a failure puts the exchanges and the files in use back."""
        saved = (self.exchanges, self.in_use)
        self.exchanges, self.in_use = [*before, exchange], strip

        def rollback() -> None:
            self.exchanges, self.in_use = saved

        return self._stream(model, engine, vector, params, notify, self._start(exchange, used), rollback)

    def regenerate(self, model: Model, engine: Engine, params: SamplingParams, notify: Notify = _quiet) -> Iterator[str]:
        """Answer the last question again with the files in use now: a new version of the answer,
        the earlier ones kept. If that fails, nothing changes."""
        self._settle()
        if not self.exchanges:
            raise BadInput("Nothing to regenerate yet.")
        vector, used = self._fuse(model, self.in_use)
        return self._stream(model, engine, vector, params, notify, self._start(self.exchanges[-1], used), rollback=lambda: None)

    def _start(self, exchange: Exchange, used: tuple[Used, ...]) -> _Answer:
        """The answer of `exchange`, owned from now on by the stream about to be made."""
        self._current = _Answer(exchange, used)
        return self._current

    def _stream(
        self,
        model: Model,
        engine: Engine,
        vector: Vector | None,
        params: SamplingParams,
        notify: Notify,
        answer: _Answer,
        rollback: Callable[[], object],
    ) -> Iterator[str]:
        """Stream into `answer` while it is still the session's current one. If it fails, the change
        is undone, unless a `UserError` cut it short after some text (a timeout, GPU memory, a
        restart): then what was shown stays as the answer."""
        seen = self.conversation(upto=answer.exchange)  # what fits in the context; the session keeps every turn
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
        except Exception as error:
            if self._current is answer:
                if isinstance(error, UserError) and answer.text.strip():
                    self._settle()
                else:
                    self._current = None
                    rollback()
            raise
        if self._current is answer:
            self._settle()

    # --- the other actions ----------------------------------------------------------------------

    def undo(self) -> tuple[str, list[Attachment]] | None:
        """Remove the last exchange, and its files from those in use; returns its question and files
        so the user can edit and resend them."""
        self._settle()
        if not self.exchanges:
            return None
        exchange = self.exchanges.pop()
        kept = {id(a) for e in self.exchanges for a in e.attached}
        self.in_use = [a for a in self.in_use if a not in exchange.attached or id(a) in kept]
        return exchange.question, exchange.attached

    def clear(self) -> None:
        self._settle()
        self.exchanges.clear()
        self.in_use.clear()
        self.pending.clear()
        self.cache.clear()

    def page(self, step: int) -> None:
        """Show another version of the last answer (the conversation goes on from the one shown)."""
        self._settle()
        if self.exchanges and self.exchanges[-1].versions:
            last = self.exchanges[-1]
            last.shown = min(max(last.shown + step, 0), len(last.versions) - 1)

    def versions(self) -> tuple[int, int]:
        """(shown, count) of the last answer's versions, shown counted from 1; (0, 0) without one."""
        last = self.exchanges[-1] if self.exchanges else None
        return (last.shown + 1, len(last.versions)) if last and last.versions else (0, 0)

    @property
    def waiting(self) -> bool:
        """Whether an answer is being streamed."""
        return self._current is not None

    def messages(self, show: Show = _unshown) -> list[dict]:
        """The chat in the messages format of `gr.Chatbot`, an answer being streamed included: each
        question with its files as `show` presents them, each answer with what it was given."""
        result: list[dict] = []
        for exchange in self.exchanges:
            items = [item for item in map(show, exchange.attached) if item is not None]
            names = [f"{a.name} ({a.kind.value}{'' if a.path else ', not on the server'})" for a in exchange.attached]
            content = [exchange.question, *items, "📎 " + " · ".join(names)] if names else exchange.question
            result.append({"role": "user", "content": content})
            current = self._current if self._current is not None and self._current.exchange is exchange else None
            version = Version(current.text, current.used) if current and current.text else exchange.answer
            if version is not None:
                content = version.text if not version.used else [version.text, f"*Used: {version.caption()}*"]
                result.append({"role": "assistant", "content": content})
        return result

    def owner_of(self, message_index: int) -> int:
        """The exchange that chat message `message_index` (as `messages` lists them) belongs to."""
        index = 0
        for number, exchange in enumerate(self.exchanges):
            shown = 2 if exchange.answer is not None or (self._current and self._current.exchange is exchange) else 1
            if message_index < index + shown:
                return number
            index += shown
        raise BadInput(f"There is no message {message_index + 1} in this chat.")
