"""One chat completion as `/v1` and the batch runner both make it: the answer's pieces with the
request's stop strings applied, how it ended (`Outcome`), and the response in OpenAI's shapes
(`Reply`: the whole completion, or its stream's chunks)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from pandagpt_demo.app.conversation.chatlog import Attachment
from pandagpt_demo.app.conversation.session import ChatSession, Model
from pandagpt_demo.model.generation import partial_stop

from .request import CompletionRequest

log = logging.getLogger(__name__)
# The line ends of `str.splitlines` that JSON leaves raw in a string (control characters it escapes).
LINE_ENDS = {ord(c): f"\\u{ord(c):04x}" for c in "\x85\u2028\u2029"}


@dataclass
class Outcome:
    """How an answer ended, filled in by its stream for the response's last chunk."""

    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    text: list[str] = field(default_factory=list)

    def usage(self) -> dict:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


class StopStrings:
    """Cuts an answer at the first of the request's `stop` strings, holding back a tail that might begin one."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = stops

    def cut(self, text: str) -> tuple[str, bool]:
        """The part of `text` that is certain to be sent, and whether a stop string was reached."""
        found = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if found:
            return text[: min(found)], True
        safe = min([len(text) - partial_stop(text, stop) for stop in self.stops], default=len(text))
        return text[:safe], False


def completion_pieces(
    model: Model, engine: object, parsed: CompletionRequest, attached: list[Attachment], outcome: Outcome, session: ChatSession | None = None
) -> Iterator[str]:
    """The answer to `parsed` with its files `attached`, piece by piece, cut at its stop strings;
    `outcome` is filled in at its end. `engine` is a metered one (its last request's token counts
    and finish reason: answering/metrics.py). `session`: one holding `parsed`'s history (made here
    when not given), whose cache then keeps the files' vectors."""
    session = session or ChatSession.from_history(parsed.history)
    stops, sent, so_far, stopped = StopStrings(parsed.stop), "", "", False
    for so_far in session.ask(model, engine, parsed.question, parsed.params, log.info, attached=attached):
        text, stopped = stops.cut(so_far)
        if len(text) > len(sent):
            yield text[len(sent) :]
            sent = text
        if stopped:
            break
    if not stopped and len(so_far) > len(sent):  # the tail held back began no stop string after all
        yield so_far[len(sent) :]
    outcome.finish_reason = "stop" if stopped else engine.finish_reason
    outcome.prompt_tokens, outcome.completion_tokens = engine.prompt_tokens, engine.completion_tokens


class Reply:
    """The response's chunks and whole answer in OpenAI's shapes, all with one id."""

    def __init__(self, model: str) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model

    def chunk(self) -> dict:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model, "system_fingerprint": None}

    def event(self, delta: dict, finish_reason: str | None = None, include_usage: bool = False) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return self.sse({**self.chunk(), "choices": [choice], **({"usage": None} if include_usage else {})})

    @staticmethod
    def sse(data: dict) -> str:
        """One server-sent event. Characters that Python's `str.splitlines` (and so httpx's
        `iter_lines`) take for line ends are escaped: raw, as JSON allows, they would cut the event
        in two for such a client (the SSE spec ends lines at CR and LF only)."""
        return f"data: {json.dumps(data, ensure_ascii=False).translate(LINE_ENDS)}\n\n"

    def whole(self, text: str, outcome: Outcome) -> dict:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": outcome.finish_reason}
        return {**self.chunk(), "object": "chat.completion", "choices": [choice], "usage": outcome.usage()}
