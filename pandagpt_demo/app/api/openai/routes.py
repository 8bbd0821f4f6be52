"""`/v1`: OpenAI's chat-completions protocol on the page's own server and port, served by the same
model, engine and batching as the page. A FastAPI application mounted at `/v1`, so that the request
is validated by its schema (protocol.py) and the schema is published: `/v1/openapi.json`, `/v1/docs`.

A request is one-shot, like `/chat`: its media are written to the upload folder under its own
name (counted against the disk budget, held while it answers, deleted after), its turns become a
`ChatSession`, and its answer streams as server-sent events in OpenAI's chunk format or comes
whole. Every answer on `/v1` that is not a success is OpenAI's error shape (refusals.py): 400 for a
bad body, file or setting (naming it in `param`), 401 without the `--api-key` (with
`WWW-Authenticate: Bearer`), 404 for another model or a path this server does not serve, 405 for a
method a path does not take, 413 over the size limit (a declared length refused before the body is
read, a longer body as soon as it passes it), 429 for a full queue, 503 while loading or draining, 504 past a timeout; 500 for our own
faults (logged, never blamed on the user).

A body is read as it arrives, its media strings spooled to disk (body.py), then parsed, validated
and turned into PandaGPT's request in a worker thread: the event loop, which serves every other
request and the page, only moves bytes. FastAPI still describes the body (its schema is the
endpoint's parameter), but reading it is this route's own.
"""

from __future__ import annotations

import hmac
import logging
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Security
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount

from pandagpt_demo.app.answering.core import Answering
from pandagpt_demo.app.answering.metrics import error_kind
from pandagpt_demo.app.api.attachments import api_attachments
from pandagpt_demo.app.public.fetcher import fetch_to
from pandagpt_demo.app.public.uploads import FULL, Reservation
from pandagpt_demo.errors import BadInput, BadSetting, Unavailable, UserError
from pandagpt_demo.model.kinds import guess_kind
from pandagpt_demo.model.modalities import Modality

from .body import BodyScanner, ReadBody, too_large
from .completion import Outcome, Reply, completion_pieces
from .protocol import ChatCompletionRequest, ErrorResponse
from .refusals import HttpError, error_body, error_response
from .request import CompletionRequest, Medium, parse_body, read_request

log = logging.getLogger(__name__)
ENDPOINT = "openai"
FEED_BYTES = 2**20  # a body's bytes are handed to the scanner's thread this many at a time


@dataclass(frozen=True)
class ApiConfig:
    """How the OpenAI-compatible API is guarded (README, "OpenAI-compatible API")."""

    api_key: str | None = None  # required as `Authorization: Bearer <key>` on /v1 when set
    allow_remote_media: bool = False  # fetch http(s) media URLs (off: a public server would fetch any URL it is given)
    max_file_bytes: int = 200 * 2**20  # one file, decoded; the app passes --max-file-mb
    max_text_chars: int = 1_000_000  # a request's text in all, counted before tokenizing (hundreds of times a context)
    # A body's bytes in all: its media go to disk as they arrive (counted against the upload
    # budget), so this bounds disk, not memory; one largest file in base64 fits.
    max_request_bytes: int = 512 * 2**20
    # The body apart from its long media strings, held in memory and parsed: the text limit's
    # characters as JSON escapes (up to 6 bytes each) with room for 10,000 messages around them.
    max_json_bytes: int = 16 * 2**20


class CompletionsRoute(APIRoute):
    """`POST /v1/chat/completions`: FastAPI publishes its body's schema; the request is handled by
    OpenAIApi.guarded, which reads the body in bounded memory and validates it off the event loop."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        async def guarded(request: Request) -> Response:
            api: OpenAIApi = request.app.state.openai
            return await api.guarded(request)

        return guarded


class OpenAIApi:
    """The `/v1` application of one app, answered through the core every endpoint shares."""

    def __init__(self, core: Answering, config: ApiConfig) -> None:
        self.core = core
        self.handle = core.handle
        self.house = core.house
        self.metrics = core.metrics
        self.settings = core.settings
        self.config = config
        serving = core.handle.serving
        # A thread per answer waiting for its next token; beyond what the engine takes, it says Busy first.
        self.limiter = anyio.CapacityLimiter((serving.max_batch or 1) + serving.max_waiting + 4)
        self.app = self._app()

    @property
    def model_id(self) -> str:
        return f"pandagpt-{self.handle.choice.config.name}"

    def routes(self) -> list[Mount]:
        return [Mount("/v1", app=self.app)]

    def _app(self) -> FastAPI:
        """The application mounted at /v1: its three routes, its schema, and OpenAI's shape for a
        path or method it does not serve."""
        app = FastAPI(
            title="PandaGPT: OpenAI-compatible API",
            version=version("pandagpt-demo"),
            description="OpenAI's chat completions for PandaGPT, with media parts for the six kinds it takes.",
            docs_url="/docs",
            redoc_url=None,
        )
        app.state.openai = self
        refusals = {status: {"model": ErrorResponse} for status in (400, 401, 404, 413, 429, 503, 504)}
        secured = [Security(HTTPBearer(auto_error=False, description="The server's --api-key."))] if self.config.api_key else []
        app.router.add_api_route("/models", self.models, methods=["GET"], dependencies=secured, responses=refusals)
        app.router.add_api_route("/models/{model:path}", self.model, methods=["GET"], dependencies=secured, responses=refusals)
        app.router.add_api_route(
            "/chat/completions",
            self.completions,
            methods=["POST"],
            dependencies=secured,
            responses=refusals,
            route_class_override=CompletionsRoute,
            strict_content_type=False,  # a body without a Content-Type is read as JSON, as OpenAI does
            summary="Answer a conversation about images, sounds, videos, thermal images, depth maps and IMU recordings",
        )
        app.add_exception_handler(HttpError, lambda request, error: error_response(error))
        app.add_exception_handler(HTTPException, self.elsewhere)
        return app

    def _authorize(self, request: Request) -> None:
        """The key as RFC 6750 sends it: `Authorization: Bearer <key>`, the scheme in any case."""
        if self.config.api_key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.config.api_key.encode()):
            raise HttpError(401, "Invalid or missing API key: send it as 'Authorization: Bearer <key>'.", "invalid_api_key")

    def _card(self) -> dict:
        return {"id": self.model_id, "object": "model", "created": 0, "owned_by": "pandagpt-demo"}

    async def models(self, request: Request) -> JSONResponse:
        """The one model served."""
        self._authorize(request)
        return JSONResponse({"object": "list", "data": [self._card()]})

    async def model(self, request: Request, model: str) -> JSONResponse:
        """The served model's card, or a 404 naming the one that is served."""
        self._authorize(request)
        self._check_model(model)
        return JSONResponse(self._card())

    async def elsewhere(self, request: Request, error: HTTPException) -> Response:
        """A path or method FastAPI does not route here: a 405 naming the methods a served path
        takes, else a 404 naming what is served."""
        if error.status_code == 405:
            allow = tuple((error.headers or {}).get("Allow", "").replace(" ", "").split(","))
            message = f"{request.method} is not allowed on {request.url.path}; it takes {', '.join(allow)}."
            return error_response(HttpError(405, message, "method_not_allowed", allow))
        if error.status_code == 404:
            served = "GET /v1/models, GET /v1/models/{id}, POST /v1/chat/completions"
            return error_response(HttpError(404, f"{request.url.path} is not served here; this server serves {served}.", "not_found"))
        return error_response(HttpError(error.status_code, str(error.detail), "http_error"))

    async def guarded(self, request: Request) -> Response:
        """A completions request: the key, the body read within its limits, then validated and
        answered; every refusal on the way is one response in OpenAI's shape."""
        self.metrics.started(ENDPOINT)
        request.state.owner = owner = f"openai-{uuid.uuid4().hex}"  # the request's id: its files' folder, its log lines
        try:
            self._authorize(request)
            request.state.read = read = await self._read_body(request, owner)
            body = await anyio.to_thread.run_sync(parse_body, request.headers.get("content-type"), read.json)
            return await self.completions(request, body)
        except ClientDisconnect as error:  # gone while sending its body: nobody to answer, nothing of ours failed
            await anyio.to_thread.run_sync(self._clean_up, owner)
            self.core.failed(ENDPOINT, "disconnected", owner, error)
            return Response(status_code=400)
        except Exception as error:  # noqa: BLE001 - every failure becomes an OpenAI-format error
            await anyio.to_thread.run_sync(self._clean_up, owner)
            return self._failed(error, owner)

    async def completions(self, request: Request, body: ChatCompletionRequest) -> Response:
        """Answer the conversation, streamed as server-sent events with `stream`, else whole.
        (Its parameters are what FastAPI publishes; `guarded` has read the body.)"""
        owner, read = request.state.owner, request.state.read
        self._check(body)
        config = self.config
        parsed = await anyio.to_thread.run_sync(partial(read_request, body, self.settings, config.max_file_bytes, config.max_text_chars, read))
        self._check_media(parsed)
        outcome = Outcome()
        pieces = self._answer(parsed, owner, outcome)
        first = await self._next(pieces)  # before the headers: a refusal still gets its own status
        reply = Reply(self.model_id)
        if parsed.stream:
            return StreamingResponse(self._events(reply, pieces, first, outcome, parsed.include_usage, owner), media_type="text/event-stream")
        while first is not None:
            outcome.text.append(first)
            first = await self._next(pieces)
        return JSONResponse(reply.whole("".join(outcome.text), outcome))

    async def _read_body(self, request: Request, owner: str) -> ReadBody:
        """The body, refused (413) by its declared length before a byte is read, or as soon as what
        has arrived passes the limit; its media strings go to the request's folder as they come."""
        limit = self.config.max_request_bytes
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise too_large(limit)
        spool = self._folder(owner) / "spool"
        files: list[Path] = []

        def new_file(number: int) -> Path:
            files.append(spool / f"{number}.b64")
            self.house.uploads.hold(owner, files)  # the janitor leaves it alone from its first byte
            return files[-1]

        disk = Reservation(self.house.uploads)
        scanner = BodyScanner(limit, self.config.max_json_bytes, new_file, disk.room)
        batch, received = bytearray(), 0
        try:
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit:  # at once, not when the batch reaches the scanner
                    raise too_large(limit)
                batch += chunk
                if len(batch) >= FEED_BYTES:
                    await anyio.to_thread.run_sync(scanner.feed, bytes(batch))
                    batch.clear()
            await anyio.to_thread.run_sync(scanner.feed, bytes(batch))
            return scanner.finish()
        finally:
            scanner.close()
            disk.release()

    def _failed(self, error: BaseException, owner: str) -> JSONResponse:
        response = error_response(error)  # an internal fault is logged here, with its traceback
        self.core.failed(ENDPOINT, error.code if isinstance(error, HttpError) else error_kind(error), owner, error)
        return response

    def _check_model(self, model: object) -> None:
        if model != self.model_id:
            raise HttpError(
                404, f"The model {model!r} does not exist here; this server serves {self.model_id!r} (GET /v1/models).", "model_not_found"
            )

    def _check(self, body: ChatCompletionRequest) -> None:
        """What refuses a request before any of its media is decoded."""
        self._check_model(body.model)
        if self.handle.serving.max_batch is None:
            raise Unavailable(
                "The OpenAI-compatible API is not available on a ZeroGPU Space (the GPU exists only inside the page's requests); use /chat."
            )

    def _check_media(self, parsed: CompletionRequest) -> None:
        if any(m.url for m in parsed.media) and not self.config.allow_remote_media:
            raise BadSetting(
                "Remote media URLs are off on this server (an operator turns them on with --allow-remote-media); send the file as a base64 data URL.",
                param=next(m.where for m in parsed.media if m.url),
            )

    async def _next(self, pieces: Iterator[str]) -> str | None:
        """The next piece of the answer, decoded in a worker thread; None at its end."""
        return await anyio.to_thread.run_sync(next, pieces, None, limiter=self.limiter)

    async def _events(
        self, reply: Reply, pieces: Iterator[str], first: str | None, outcome: Outcome, include_usage: bool, owner: str
    ) -> AsyncIterator[str]:
        """Server-sent events: the role, each piece, the finish reason, the usage if asked, [DONE].
        A client that goes away stops the decoding (the stream is closed)."""
        try:
            yield reply.event({"role": "assistant", "content": ""}, include_usage=include_usage)
            while first is not None:
                yield reply.event({"content": first}, include_usage=include_usage)
                first = await self._next(pieces)
            yield reply.event({}, outcome.finish_reason, include_usage=include_usage)
            if include_usage:
                yield reply.sse({**reply.chunk(), "choices": [], "usage": outcome.usage()})
            yield "data: [DONE]\n\n"
        except Exception as error:  # noqa: BLE001 - after the headers, an error is an event
            body = error_body(error)[1]
            self.core.failed(ENDPOINT, error_kind(error), owner, error)
            yield reply.sse(body)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(pieces.close)

    # --- in worker threads ----------------------------------------------------------------------

    def _folder(self, owner: str) -> Path:
        """Where a request's files live while it is answered."""
        return self.house.uploads.root / "api" / owner

    def _clean_up(self, owner: str) -> None:
        """A request's files gone, and the folder's budget no longer holding them."""
        shutil.rmtree(self._folder(owner), ignore_errors=True)
        self.house.release(owner)

    def _answer(self, parsed: CompletionRequest, owner: str, outcome: Outcome) -> Iterator[str]:
        """The answer's new text piece by piece; its files live in their own folder while it runs."""
        folder = self._folder(owner)
        try:
            attached = api_attachments(self._save(parsed.media, folder, owner), parsed.weights, self.settings)
            with self.house.answering(owner, [a.path for a in attached]):
                yield from completion_pieces(*self.core.served(), parsed, attached, outcome)
        finally:
            self._clean_up(owner)

    def _save(self, media: list[Medium], folder: Path, owner: str) -> dict[Modality, list[dict]]:
        """Each medium as a file in `folder`, within the disk budget; the files by kind, as `/chat` takes them."""
        files: dict[Modality, list[dict]] = {m: [] for m in Modality}
        paths: list[Path] = []
        for index, medium in enumerate(media):
            path = folder / f"{index}-{medium.name}"
            paths.append(path)
            self.house.uploads.hold(owner, paths)  # the janitor leaves it alone from its first byte
            folder.mkdir(parents=True, exist_ok=True)
            if medium.path is not None:  # decoded from the spooled body, already counted on disk
                medium.path.replace(path)
            elif medium.url is not None:
                self._fetch(medium.url, path, medium.where)
            else:
                self._write(medium.data, path)
            kind = medium.kind or guess_kind(path)
            if kind is None:
                raise BadInput(f"'{medium.name}' is not a kind of file PandaGPT takes; give its `modality`.", param=medium.where)
            files[kind].append({"path": str(path), "orig_name": medium.name} | ({"with_sound": True} if medium.with_sound else {}))
        return files

    def _write(self, data: bytes, path: Path) -> None:
        if not self.house.uploads.reserve(len(data)):
            raise Unavailable(FULL)
        try:
            path.write_bytes(data)
        finally:
            self.house.uploads.unreserve(len(data))

    def _fetch(self, url: str, path: Path, where: str) -> None:
        """A remote medium (only with --allow-remote-media) into `path`, through the one fetcher
        that refuses addresses inside the network, within the size and time limits."""
        room = Reservation(self.house.uploads)
        room.room(self.config.max_file_bytes)
        try:
            fetch_to(url, path, self.settings.remote)
        except UserError as error:
            error.param = error.param or where
            raise
        finally:
            room.release()
