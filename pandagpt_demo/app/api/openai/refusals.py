"""Every answer on `/v1` that is not a success, in OpenAI's shape: `{"error": {message, type, param,
code}}` with the status OpenAI would give. `param` names the request field at fault as a path into
the body (`messages[0].content[1].image_url`), from the schema's validation errors or from the
`UserError` that request.py raised; an internal fault is logged and shown only by its id.
"""

from __future__ import annotations

from fastapi.exceptions import RequestValidationError
from starlette.responses import JSONResponse

from pandagpt_demo.app.answering.metrics import error_kind
from pandagpt_demo.errors import Busy, OutOfMemory, TimedOut, TooLarge, Unavailable, UserError, internal_error

STATUS = {TooLarge: 413, Busy: 429, Unavailable: 503, OutOfMemory: 503, TimedOut: 504}  # other user errors: 400
DISCRIMINATORS = ("role", "type")  # the fields that pick a message's or a content part's model


class HttpError(Exception):
    """A refusal that is about HTTP or the protocol itself (the key, the path, the body's JSON), with
    its status and code."""

    def __init__(self, status: int, message: str, code: str, allow: tuple[str, ...] = (), param: str | None = None) -> None:
        """`allow`: for a 405, the methods the path takes."""
        super().__init__(message)
        self.status = status
        self.code = code
        self.allow = allow
        self.param = param


def error_body(error: BaseException) -> tuple[int, dict]:
    """The HTTP status and OpenAI-format body for an error (an internal fault is logged with its id)."""
    param = getattr(error, "param", None)
    if isinstance(error, HttpError):
        status, code, message = error.status, error.code, str(error)
    elif isinstance(error, UserError):
        status = next((s for kind, s in STATUS.items() if isinstance(error, kind)), 400)
        code, message = error_kind(error), str(error)
    else:
        status, code, message, param = 500, "internal", internal_error(error), None
    kind = "invalid_request_error" if status < 429 else "rate_limit_error" if status == 429 else "server_error"
    return status, {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(error: BaseException) -> JSONResponse:
    status, body = error_body(error)
    headers = {"Retry-After": "1" if status == 429 else "5"} if status in (429, 503) else {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(error, HttpError) and error.allow:
        headers["Allow"] = ", ".join(error.allow)
    return JSONResponse(body, status_code=status, headers=headers)


def body_refusal(error: RequestValidationError) -> HttpError:
    """What the schema found wrong with a body, as one refusal naming the field: its errors on the
    first field at fault (the deepest place wins, as a union's members each report one: several at
    that place are one message)."""
    problems = list(error.errors())
    first = problems[0]["loc"][1:2]  # the first field at fault; among its errors, the deepest
    found = [(json_path(error.body, p["loc"][1:], p["type"] == "missing"), p["msg"]) for p in problems if p["loc"][1:2] == first]
    depth = max(len(path) for path, _ in found)
    deepest = [(path, message) for path, message in found if len(path) == depth]
    param = render(deepest[0][0])
    messages = " or ".join(dict.fromkeys(message.removeprefix("Value error, ") for _, message in deepest))
    return HttpError(400, f"{param or 'The request body'}: {messages}.", "invalid_request", param=param or None)


def json_path(body: object, loc: tuple, missing: bool) -> list[str | int]:
    """The path into the `body` a validation error's `loc` names. The `loc` also holds the names of
    union members (`str`, `list[...]`) and the tags of discriminated unions (a message's role, a
    part's type), which are no place in the body: each step is kept only where the body has it (a
    missing field is kept as the last step)."""
    path: list[str | int] = []
    here = body
    for index, step in enumerate(loc):
        if index and isinstance(loc[index - 1], int) and isinstance(here, dict) and any(here.get(f) == step for f in DISCRIMINATORS):
            continue  # a list item's tag: which model its own `role` or `type` chose
        if isinstance(here, dict) and isinstance(step, str) and step in here:
            here = here[step]
        elif isinstance(here, list) and isinstance(step, int) and 0 <= step < len(here):
            here = here[step]
        elif not (missing and index == len(loc) - 1):
            continue
        path.append(step)
    return path


def render(path: list[str | int]) -> str:
    """`["messages", 0, "content"]` as `messages[0].content`."""
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else f".{step}" if text else step
    return text
