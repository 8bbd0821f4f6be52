"""The page's handlers: every one works on the caller's own `ChatSession`.

Each browser tab has its own session in `gr.State`: its chat, files and cached embeddings are
never seen by anyone else. The model is shared. Every handler checks in with `Housekeeping`
(public/housekeeping.py): the cap on sessions, their idle expiry, the files they hold in the upload
folder, and refusing new questions while the app drains. Answers go through the core every
endpoint shares (answering/core.py); the layout that wires these handlers is in page.py.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import gradio as gr

from pandagpt_demo.app.answering.core import Answering
from pandagpt_demo.app.answering.uploaded import uploaded_path
from pandagpt_demo.app.conversation.chatlog import Attachment
from pandagpt_demo.app.conversation.session import ChatSession, Model
from pandagpt_demo.config import SamplingParams
from pandagpt_demo.errors import BadInput, UserError, internal_error
from pandagpt_demo.model.intake import Intake
from pandagpt_demo.model.kinds import guess_kind, possible_kinds
from pandagpt_demo.model.modalities import Modality, has_sound_track, load_modality
from pandagpt_demo.serving.engine import Engine

from .previews import Previews

log = logging.getLogger(__name__)

EMPTY_BOX = {"text": "", "files": []}
RECORD_NAME = "pandagpt-chat.json"


def session_key(request: gr.Request | None) -> str:
    """The session's key: Gradio's session hash (one per tab, one per gradio_client.Client)."""
    return getattr(request, "session_hash", None) or "anonymous"


def _box(question: str, attached: list[Attachment]) -> dict:
    """The message box holding a question and its files again (an answer that failed); a video's
    sound is not a file of its own there."""
    return {"text": question, "files": [str(a.path) for a in attached if a.path is not None and not a.sound_of_video]}


def _box_paths(pending: list[Attachment]) -> list[Path | None]:
    """The files the message box holds for these attachments (a video's sound is its video's)."""
    return [a.path for a in pending if not a.sound_of_video]


class PageHandlers:
    """Event handlers of the page. A user's mistake (a bad file, a setting out of range, a full
    queue) is shown as a warning while the chat, the files and the message box stay as they were.

    Every handler that changes what is shown returns `view(session)`: the chat, the "in use"
    strip's rows, the versions pager and its label, in that order.
    """

    def __init__(self, core: Answering, kind_hints: dict[str, Modality] | None = None) -> None:
        """`kind_hints`: the kind of each file whose kind is known (the examples), by sha256."""
        self.core = core
        self.handle = core.handle
        self.settings = core.settings
        self.house = core.house
        self.previews = Previews(core.house.uploads.root)
        self.kind_hints = kind_hints or {}
        self._sound_tracks: dict[str, bool] = {}  # whether a video (by sha256) has sound: asked once per content

    def status(self) -> str:
        replicas = self.handle.replica_status()
        on = f" on {replicas.ready} of {replicas.total} replicas" if replicas is not None else ""
        notice = f"  \n{self.handle.notice}" if self.handle.notice else ""
        return f"{self.handle.choice.banner}{notice}  \n{self.handle.status}{on}"

    # --- what the page shows ----------------------------------------------------------------------

    def strip_rows(self, session: ChatSession) -> list[dict]:
        """The "in use" strip as plain rows (the page renders one row each): files in the message
        box first, then those in use for the next answer."""
        return [
            {
                "name": a.name,
                "sha256": a.sha256,
                "kind": a.kind.value,
                "kinds": [k.value for k in possible_kinds(a.name)] or [a.kind.value],
                "weight": a.weight,
                "where": where,
                "missing": a.path is None,
                "sound": self._can_hear(a, attachments),
            }
            for where, attachments in (("message", session.pending), ("in use", session.in_use))
            for a in attachments
        ]

    def _can_hear(self, attachment: Attachment, beside: list[Attachment]) -> bool:
        """Whether a strip row offers to add this video's sound: it has one, not added yet."""
        if attachment.kind is not Modality.VIDEO or attachment.path is None:
            return False
        if any(a.sound_of_video and a.sha256 == attachment.sha256 for a in beside):
            return False
        if attachment.sha256 not in self._sound_tracks:
            if len(self._sound_tracks) >= 4096:
                self._sound_tracks.clear()
            self._sound_tracks[attachment.sha256] = has_sound_track(attachment.path)
        return self._sound_tracks[attachment.sha256]

    def view(self, session: ChatSession) -> tuple:
        shown, count = session.versions()
        return (
            session.messages(self.previews.item),
            self.strip_rows(session),
            gr.Row(visible=count > 1),
            f"Answer version {shown} of {count}" if count > 1 else "",
        )

    def hold(self, key: str, session: ChatSession) -> list[Path]:
        """The files this tab shows or will use: the upload janitor keeps them while the session lives."""
        present = [a for a in session.attachments() if a.path is not None]
        pictures = [self.previews.intake_picture(a) for a in present]  # what ImageBind took in (intake_panel.py)
        files = [*session.files(), *self.previews.paths(present), *pictures, *([session.record_file] if session.record_file else [])]
        self.house.hold(key, files, {a.sha256: a.path for a in present})
        return files

    # --- sessions -------------------------------------------------------------------------------

    def enter(self, request: gr.Request | None, session: ChatSession) -> str:
        """Check the caller's session in (refused past the cap); tell a tab whose idle chat was cleared. Its key."""
        key = session_key(request)
        notice = self.house.enter(key, session)
        if notice:
            gr.Warning(notice)
        return key

    def guarded(self, request: gr.Request | None, session: ChatSession) -> str:
        """`enter` for the actions that do not answer: a refusal is a warning, the action still runs on this tab's own state."""
        try:
            return self.enter(request, session)
        except UserError as error:
            gr.Warning(str(error))
            return session_key(request)

    def open_page(self, stored: object, session: ChatSession, request: gr.Request) -> tuple:
        """A tab opened: it takes a place among the live sessions (or is told to come back later),
        and resumes the chat its browser kept, if any."""
        try:
            key = self.enter(request, session)
        except UserError as error:
            return (gr.Markdown(f"⚠️ {error}", visible=True), *self.view(session), session)
        if isinstance(stored, dict) and stored.get("messages"):
            try:
                session = self._resume(key, stored)
            except UserError as error:
                log.info("a stored chat could not be resumed: %s", error)
        return (gr.Markdown(visible=False), *self.view(session), session)

    def _resume(self, key: str, record: dict) -> ChatSession:
        session = ChatSession.from_record(record, self.house.find)
        self.house.enter(key, session)
        self.hold(key, session)
        missing = sorted({a.name for a in session.missing()})
        if missing:
            gr.Warning(f"Attach again to use them: {', '.join(missing)} (no longer on the server; matched by content when you attach them).")
        return session

    def close_page(self, request: gr.Request) -> None:
        """A tab closed: its session ends; its files stay for the upload grace (a reload resumes them)."""
        self.house.leave(session_key(request))

    # --- the message box and the strip --------------------------------------------------------------

    def sync_box(self, message: dict | None, session: ChatSession, request: gr.Request) -> tuple:
        """The files in the message box changed: each gets a kind (guessed, or known for an example),
        or fills in a file of the chat that was missing (same content)."""
        paths = [Path(p) for p in (message or {}).get("files") or []]
        if paths == _box_paths(session.pending):
            return gr.skip(), session
        key = self.guarded(request, session)
        self._take(paths, session)
        self.hold(key, session)
        return self.strip_rows(session), session

    def _take(self, paths: list[Path], session: ChatSession, strict: bool = False) -> None:
        """Make `paths` the session's files in the message box, keeping the kinds and weights already
        set. A file that cannot be taken is left out with a warning, or with `strict` refused (BadInput)."""
        pending: list[Attachment] = []

        def refuse(error: UserError) -> None:
            if strict:
                raise error
            gr.Warning(str(error))

        for path in paths:
            known = next((a for a in session.pending if a.path == path and not a.sound_of_video), None)
            if known is not None:
                pending.append(known)
                pending.extend(a for a in session.pending if a.sound_of_video and a.path == path)  # its sound stays with it
                continue
            if len(session.attachments()) - len(session.pending) + len(pending) >= self.settings.max_files:
                refuse(BadInput(f"'{path.name}' is left out: a chat takes at most {self.settings.max_files} files; remove some, or Clear."))
                continue
            kind = guess_kind(path)
            if kind is None:
                accepted = sorted({s for m in Modality for s in m.extensions})
                refuse(BadInput(f"'{path.name}' is not a kind of file PandaGPT takes (accepted: {', '.join(accepted)}); it is left out."))
                continue
            try:
                attachment = Attachment.of(uploaded_path(kind, str(path), self.settings.remote), kind)
            except UserError as error:
                refuse(error)
                continue
            attachment.kind = self.kind_hints.get(attachment.sha256, attachment.kind)
            if session.supply(attachment):
                gr.Info(f"'{attachment.name}' is back in the chat.")
                continue
            pending.append(attachment)
        session.pending = pending

    def set_kind(self, index: int, kind: str, session: ChatSession) -> tuple:
        """Take a file as another kind, if it can be read as one (a colour photo is no depth map)."""
        attachment = self._strip_item(session, index)
        if attachment is not None and attachment.path is not None:
            try:
                load_modality(Modality(kind), attachment.path)
            except UserError as error:
                gr.Warning(f"{error} It stays {attachment.kind.value}.")
            else:
                attachment.kind, attachment.took_in = Modality(kind), ""
        shown = attachment.kind.value if attachment is not None else kind
        return session.messages(self.previews.item), self.strip_rows(session), shown, session

    def set_weight(self, index: int, weight: float | None, session: ChatSession) -> ChatSession:
        attachment = self._strip_item(session, index)
        if attachment is not None and weight is not None:
            try:
                attachment.weight = self.settings.weight(f"'{attachment.name}'", weight)
            except UserError as error:
                gr.Warning(str(error))
        return session

    def remove(self, index: int, message: dict | None, session: ChatSession) -> tuple:
        """The ✕ of a strip row: a file in use stops being used; one in the message box leaves the box."""
        attachment = self._strip_item(session, index)
        box = gr.skip()
        if attachment in session.pending:
            session.pending.remove(attachment)
            box = _box((message or {}).get("text") or "", session.pending)
        elif attachment is not None:
            session.remove(attachment)
        return session.messages(self.previews.item), self.strip_rows(session), box, session

    def hear(self, index: int, session: ChatSession, request: gr.Request) -> tuple:
        """A strip row's 🔊: the video's sound joins as an audio input of its own, right after it."""
        key = self.guarded(request, session)
        video = self._strip_item(session, index)
        if video is not None:
            try:
                session.hear(video)
            except UserError as error:
                gr.Warning(str(error))
        self.hold(key, session)
        return session.messages(self.previews.item), self.strip_rows(session), session

    def add_capture(self, capture: str | None, message: dict | None) -> tuple:
        """A webcam photo or clip joins the files in the message box (its own input is emptied)."""
        if not capture:
            return gr.skip(), gr.skip()
        message = message or {}
        return {"text": message.get("text") or "", "files": [*(message.get("files") or []), capture]}, None

    @staticmethod
    def _strip_item(session: ChatSession, index: int) -> Attachment | None:
        strip = session.pending + session.in_use
        return strip[index] if 0 <= index < len(strip) else None

    # --- answering ------------------------------------------------------------------------------

    def _answer(self, request: gr.Request | None, session: ChatSession, start, params: tuple, box_back: dict | None) -> Iterator[tuple]:
        """Run one answering action and stream the page's view; `start(model, engine, params)` makes
        its stream. The box is emptied with the first piece; if the action fails before any text,
        `box_back` is put back into it. An answer cut short keeps what was shown, with a warning."""
        kept_box = gr.skip()
        try:
            with self.core.counted("page", session_key(request)):
                key = self.enter(request, session)
                sampling = self.settings.params(*params)
                with self.house.answering(key, self.hold(key, session)):
                    self._note_intakes(session)
                    stream = start(*self.core.served(), sampling)
                    empty = EMPTY_BOX if box_back is not None else gr.skip()
                    for _ in stream:
                        yield (*self.view(session), empty, session)
                        empty = gr.skip()
                    self.hold(key, session)
        except UserError as error:
            gr.Warning(str(error))
            if box_back is not None and not session.waiting:
                kept_box = box_back
        except Exception as error:
            yield (*self.view(session), box_back if box_back is not None else gr.skip(), session)
            if isinstance(error, gr.Error):  # ZeroGPU's own words for the visitor (their quota, a task it aborted)
                raise
            raise gr.Error(internal_error(error), print_exception=False) from error  # logged once, by internal_error
        yield (*self.view(session), kept_box, session)

    def intake(self, attachment: Attachment, session: ChatSession, draw: Callable[[Intake], None] | None = None) -> Intake:
        """What ImageBind takes in from this file (`draw`: see `Intakes.of`). The first time in this
        chat, if the loss is large, it is said as a notice: this is when the file has just been
        attached (the same content attached again, as an example's photo, is not said twice)."""
        first_time = not any(a.took_in for a in session.attachments() if (a.sha256, a.kind) == (attachment.sha256, attachment.kind))
        intake = self.core.intakes.of(attachment, draw)
        if first_time and intake.large_loss:
            gr.Info(f"{attachment.name}: {intake.summary}", duration=12)
        return intake

    def _note_intakes(self, session: ChatSession) -> None:
        """Find what ImageBind takes in from each file an answer may use, for its "Used:" line (a
        file the loader refuses is left to the answer, which says why)."""
        for attachment in session.pending + session.in_use:
            if not attachment.took_in and attachment.path is not None:
                try:
                    self.intake(attachment, session)
                except UserError:
                    pass

    def send(
        self, message: dict | None, max_new_tokens: float, top_p: float, temperature: float, session: ChatSession, request: gr.Request
    ) -> Iterator[tuple]:
        """Ask the message's question with its files (they join those in use); streams the view,
        the message box and the session. The box is emptied as the answer starts, so the next
        question can be typed while this one streams; if answering fails, it is put back."""
        question = ((message or {}).get("text") or "").strip()
        if not question:
            gr.Warning("Type a question first.")
            yield (*self.view(session), gr.skip(), session)
            return
        try:  # an API client sends no box change first
            self._take([Path(p) for p in (message or {}).get("files") or []], session, strict=True)
        except UserError as error:
            gr.Warning(str(error))
            yield (*self.view(session), gr.skip(), session)
            return
        attached = list(session.pending)

        def start(model: Model, engine: Engine, params: SamplingParams) -> Iterator[str]:
            stream = session.ask(model, engine, question, params, gr.Warning, attached=attached)
            session.pending = []
            return self._keep_box_on_failure(stream, session, attached)

        yield from self._answer(request, session, start, (max_new_tokens, top_p, temperature), _box(question, attached))

    @staticmethod
    def _keep_box_on_failure(stream: Iterator[str], session: ChatSession, attached: list[Attachment]) -> Iterator[str]:
        """If the question is taken back, its files go back to the message box with it."""
        count = len(session.exchanges)
        try:
            yield from stream
        except Exception:
            if len(session.exchanges) < count:
                session.pending = attached
            raise

    def regenerate(self, max_new_tokens: float, top_p: float, temperature: float, session: ChatSession, request: gr.Request) -> Iterator[tuple]:
        """Answer the last question again: a new version, the earlier ones kept for paging."""
        if not session.exchanges:
            gr.Warning("Nothing to regenerate yet.")
            yield (*self.view(session), gr.skip(), session)
            return

        def start(model: Model, engine: Engine, params: SamplingParams) -> Iterator[str]:
            return session.regenerate(model, engine, params, gr.Warning)

        yield from self._answer(request, session, start, (max_new_tokens, top_p, temperature), None)

    def edit(
        self, max_new_tokens: float, top_p: float, temperature: float, session: ChatSession, edited: gr.EditData, request: gr.Request
    ) -> Iterator[tuple]:
        """A past question was edited in the chat: the conversation is answered again from there."""
        value = edited.value
        text = value if isinstance(value, str) else next((v for v in value if isinstance(v, str)), "") if isinstance(value, list) else ""
        question = text.strip()
        index = edited.index[0] if isinstance(edited.index, (list, tuple)) else edited.index
        try:
            number = session.owner_of(int(index))
        except UserError as error:
            gr.Warning(str(error))
            yield (*self.view(session), gr.skip(), session)
            return
        if not question:
            gr.Warning("An edited question cannot be empty.")
            yield (*self.view(session), gr.skip(), session)
            return

        def start(model: Model, engine: Engine, params: SamplingParams) -> Iterator[str]:
            return session.edit(model, engine, number, question, params, gr.Warning)

        yield from self._answer(request, session, start, (max_new_tokens, top_p, temperature), None)

    def page(self, step: int, session: ChatSession) -> tuple:
        session.page(step)
        return (*self.view(session), session)

    def undo(self, session: ChatSession, request: gr.Request) -> tuple:
        """Remove the last exchange (stopping its answer if one is streaming); its question and files go back to the box."""
        key = self.guarded(request, session)
        undone = session.undo()
        box = gr.skip()
        if undone is not None:
            question, attached = undone
            session.pending = [a for a in attached if a.path is not None]
            box = _box(question, session.pending)
        self.hold(key, session)
        return (*self.view(session), box, session)

    def clear(self, session: ChatSession, request: gr.Request) -> tuple:
        """Forget the chat, its files and cached embeddings (stopping an answer being streamed); the files may go."""
        self.guarded(request, session)
        session.clear()
        self.house.release(session_key(request))
        return (*self.view(session), EMPTY_BOX, session)

    # --- keep and resume ------------------------------------------------------------------------

    def remember(self, max_new_tokens: float, top_p: float, temperature: float, session: ChatSession, request: gr.Request) -> tuple[dict, str]:
        """The record the browser keeps (text, settings, names and sums of files; no file), and
        the same as the JSON file the Export button downloads."""
        record = session.record({"max_new_tokens": max_new_tokens, "top_p": top_p, "temperature": temperature})
        folder = self.house.uploads.root / "chats" / uuid.uuid4().hex  # a new name each time: no stale download
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / RECORD_NAME
        path.write_text(json.dumps(record, indent=1, ensure_ascii=False), encoding="utf-8")
        session.record_file = path
        self.hold(session_key(request), session)
        return record, str(path)

    def import_chat(self, file: str | None, session: ChatSession, request: gr.Request) -> tuple:
        """Resume an exported chat: its settings come back, its files are matched by content as they are attached."""
        sliders = (gr.skip(),) * 3
        if not file:
            return (*self.view(session), *sliders, session)
        key = self.guarded(request, session)
        try:
            record = json.loads(Path(file).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            gr.Warning(f"'{Path(file).name}' is not a chat file this demo exported: it is not readable JSON ({error}).")
            return (*self.view(session), *sliders, session)
        try:
            session.clear()
            session = self._resume(key, record)
        except UserError as error:
            gr.Warning(f"'{Path(file).name}': {error}")
            return (*self.view(session), *sliders, session)
        settings = record.get("settings", {})
        sliders = tuple(settings.get(name, gr.skip()) for name in ("max_new_tokens", "top_p", "temperature"))
        return (*self.view(session), *sliders, session)
