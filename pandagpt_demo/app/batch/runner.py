"""Running a batch: every request of the input answered on the app's own engine, as many in flight
as it decodes together, each written to the output the moment it is done, in OpenAI's batch output
format — `id`, `custom_id`, `response` (`status_code`, `request_id`, `body`: the completion, or the
error in `/v1`'s shape), `error` (only for a line that is not a request at all).

Every request goes through `/v1`'s own steps: its parser and limits (openai/request.py), its
attachments (api/attachments.py) and its answer loop (openai/completion.py), so an answer here
equals `/v1`'s for the same body. The runner resumes: a `custom_id` the output already holds is not
asked again. Stopping it (Ctrl-C, `stop()`) ends the answers in flight without writing them (a
rerun asks them again) and keeps every line written.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from pandagpt_demo.app.answering.metrics import MeteredEngine
from pandagpt_demo.app.answering.settings import AnswerSettings
from pandagpt_demo.app.answering.uploaded import upload_folder
from pandagpt_demo.app.api.attachments import api_attachments
from pandagpt_demo.app.api.openai.completion import Outcome, Reply, completion_pieces
from pandagpt_demo.app.api.openai.refusals import HttpError, error_body
from pandagpt_demo.app.api.openai.request import Medium, parse_body, read_request
from pandagpt_demo.app.conversation.chatlog import Attachment
from pandagpt_demo.app.conversation.session import ChatSession
from pandagpt_demo.errors import BadInput, BadSetting
from pandagpt_demo.model.kinds import guess_kind
from pandagpt_demo.model.modalities import Modality
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.serving.engine import Engine

from .input_lines import InputLine, with_local_files

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchLimits:
    """What one request may hold: `/v1`'s own limits (api/openai/routes.ApiConfig)."""

    max_file_bytes: int = 200 * 2**20
    max_text_chars: int = 1_000_000


@dataclass
class Tally:
    """How the run is going: what the progress bar and the last log line say."""

    total: int = 0
    skipped: int = 0  # answered by an earlier run (resume)
    done: int = 0
    failed: int = 0
    tokens: int = 0
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        seconds = time.monotonic() - self.started
        rate = self.tokens / seconds if seconds > 0 else 0.0
        left = self.total - self.skipped - self.done - self.failed
        per_request = seconds / (self.done + self.failed) if self.done + self.failed else 0.0
        return f"{self.done} done, {self.failed} failed, {left} to go, {rate:.1f} tokens/s, about {left * per_request:.0f} s left"


@dataclass(frozen=True)
class Answered:
    """One request's answer: its output line, its files and the session that holds their vectors."""

    line: dict
    ok: bool
    tokens: int = 0
    attached: tuple[Attachment, ...] = ()
    session: ChatSession | None = None


PASSING = {429, 500, 502, 503, 504}  # refusals of the moment (busy, closing, a fault), not of the request: asked again


def answered_ids(output: Path) -> set[str]:
    """The custom_ids an earlier run of this output already answered or refused for good (a torn
    last line is ignored; a refusal of the moment, PASSING, is asked again, its new line after it)."""
    if not output.exists():
        return set()
    ids = set()
    for text in output.read_text(encoding="utf-8").splitlines():
        try:
            line = json.loads(text)
            custom_id, status = line.get("custom_id"), (line.get("response") or {}).get("status_code")
        except (json.JSONDecodeError, AttributeError):
            continue
        if isinstance(custom_id, str) and status not in PASSING:
            ids.add(custom_id)
    return ids


class BatchRunner:
    """Answers a batch's lines with one model and engine (the app's, built by the caller)."""

    def __init__(
        self,
        model: PandaGPT,
        engine: Engine,
        model_id: str,
        settings: AnswerSettings,
        limits: BatchLimits = BatchLimits(),
        workers: int = 8,
    ) -> None:
        """`workers`: requests in flight at once (the engine's batch: more only wait in its queue)."""
        self.model, self.engine, self.model_id = model, engine, model_id
        self.settings, self.limits, self.workers = settings, limits, workers
        self.stopping = threading.Event()

    def stop(self) -> None:
        """End the run: no new request starts; those in flight stop at their next token, unwritten."""
        self.stopping.set()

    def run(
        self, lines: Iterable[InputLine], folder: Path, output: Path, tally: Tally, on_answer: Callable[[Answered], None] = lambda answer: None
    ) -> None:
        """Answer every line whose custom_id `output` does not hold yet, appending each answer to it
        as it is done; `folder`: where relative media paths start; `on_answer` sees each answer."""
        seen = answered_ids(output)
        todo = []
        for line in lines:
            tally.total += 1
            if line.custom_id in seen:
                tally.skipped += 1
            else:
                todo.append(line)
                if line.custom_id is not None:
                    seen.add(line.custom_id)
        upload_folder().mkdir(parents=True, exist_ok=True)
        media = Path(tempfile.mkdtemp(prefix="batch-", dir=upload_folder()))  # where /chat and /v1 read files from
        try:
            with output.open("a", encoding="utf-8") as out, ThreadPoolExecutor(self.workers, thread_name_prefix="batch") as pool:
                pending: set[Future] = set()
                queue = iter(todo)
                while not self.stopping.is_set():
                    while len(pending) < self.workers and (line := next(queue, None)) is not None:
                        pending.add(pool.submit(self._answer, line, folder, media))
                    if not pending:
                        break
                    finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    for future in finished:
                        answer = future.result()
                        if answer is None:  # stopped midway: asked again by the next run
                            continue
                        out.write(json.dumps(answer.line, ensure_ascii=False) + "\n")
                        out.flush()
                        tally.done += answer.ok
                        tally.failed += not answer.ok
                        tally.tokens += answer.tokens
                        on_answer(answer)
                for future in pending:
                    future.cancel()
        finally:
            shutil.rmtree(media, ignore_errors=True)

    def _answer(self, line: InputLine, folder: Path, media: Path) -> Answered | None:
        """One line's output line (its answer, or its refusal in `/v1`'s shape); None if stopped."""
        request_id = f"req_{uuid.uuid4().hex}"
        if line.problem is not None:
            error = {"code": "invalid_request_line", "message": line.problem, "line": line.number}
            return Answered({"id": f"batch_req_{uuid.uuid4().hex}", "custom_id": line.custom_id, "response": None, "error": error}, False)
        own = media / request_id
        try:
            body = with_local_files(line.body, folder, self.limits.max_file_bytes)
            parsed = read_request(
                parse_body("application/json", json.dumps(body).encode()), self.settings, self.limits.max_file_bytes, self.limits.max_text_chars
            )
            if parsed.model != self.model_id:
                raise HttpError(404, f"The model {parsed.model!r} does not exist here; this run serves {self.model_id!r}.", "model_not_found")
            attached = api_attachments(_saved(parsed.media, own), parsed.weights, self.settings)
            session, engine, outcome = ChatSession.from_history(parsed.history), MeteredEngine(self.engine), Outcome()
            pieces = completion_pieces(self.model, engine, parsed, attached, outcome, session)
            try:
                for piece in pieces:
                    if self.stopping.is_set():
                        return None
                    outcome.text.append(piece)
            finally:
                pieces.close()
            status, response, ok = 200, Reply(self.model_id).whole("".join(outcome.text), outcome), True
        except Exception as error:  # noqa: BLE001 - every refusal is this line's, in /v1's shape; the run goes on
            if self.stopping.is_set():
                return None  # ended by the stop, not by the request: asked again by the next run
            status, response = error_body(error)  # an internal fault is logged here, with its traceback
            ok, outcome, attached, session = False, Outcome(), [], None
            log.info("request %s (line %d) refused: %s", line.custom_id, line.number, response["error"]["message"])
        finally:
            shutil.rmtree(own, ignore_errors=True)
        result = {"status_code": status, "request_id": request_id, "body": response}
        output = {"id": f"batch_req_{uuid.uuid4().hex}", "custom_id": line.custom_id, "response": result, "error": None}
        return Answered(output, ok, outcome.completion_tokens, tuple(attached), session)


def _saved(media: list[Medium], folder: Path) -> dict[Modality, list[dict]]:
    """Each medium as a file in `folder`, by kind, as `/chat` and `/v1` take them."""
    files: dict[Modality, list[dict]] = {m: [] for m in Modality}
    for index, medium in enumerate(media):
        if medium.url is not None:
            raise BadSetting(
                f"{medium.where}: the batch runner fetches no URLs; give the file's path (relative to the input file).", param=medium.where
            )
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{index}-{medium.name}"
        path.write_bytes(medium.data) if medium.data is not None else medium.path.replace(path)
        kind = medium.kind or guess_kind(path)
        if kind is None:
            raise BadInput(f"'{medium.name}' is not a kind of file PandaGPT takes; give its `modality`.", param=medium.where)
        files[kind].append({"path": str(path), "orig_name": medium.name} | ({"with_sound": True} if medium.with_sound else {}))
    return files
