"""`/v1/chat/completions` fuzzed: generated bodies, valid and not, sent to the launched app.

Every answer must be a success or OpenAI's error shape with a 4xx (a client's mistake is never a
500, and never counted as our fault), each within a few seconds, and the app answers normally
after. The bodies are built around the request's real shape (roles, content parts, sampling
fields, the extensions) with any JSON value in any place, so most reach deep into the reading of
a request rather than stopping at its first field.

Two runs, each set by two environment variables:

- `PANDAGPT_FUZZ_COUNT`: how many bodies a run sends (default: 300 in the default run, where
  hypothesis sends them one by one and shrinks a failure to its smallest body; 10,000 in the long
  run, whose bodies, of the same shape, come from a plain `random.Random` (`CheapBodies`: hypothesis
  takes 15-35 ms a body here, minutes for 10,000) and go from 8 clients at once).
- `PANDAGPT_FUZZ_SEED`: the seed bodies are drawn from (an integer). Unset, both runs draw the same
  bodies on every run (the default run derandomized, the long run seed 0), so CI stays a verdict on
  the change; set it to explore further, e.g.
  `PANDAGPT_FUZZ_SEED=$RANDOM python -m pytest tests/app/api/test_openai_fuzz.py -m soak -k long`.

The long run is marked `soak`: the default run skips it, CI's long step (`python tests/run.py -m soak`)
runs it and asserts 0 responses of 5xx among its 10,000, every one OpenAI-shaped; it reports the
bodies that failed, whole (they are also written to the test's temporary folder).
"""

from __future__ import annotations

import base64
import collections
import itertools
import json
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pydantic
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from pandagpt_demo.config import ModelConfig
from tests.app.api.test_openai_api import MODEL, metric
from tests.conftest import REPO_ROOT
from tests.launched import App

COUNT = os.environ.get("PANDAGPT_FUZZ_COUNT")
SEED = os.environ.get("PANDAGPT_FUZZ_SEED")
LONG_CLIENTS = 8  # the long run's clients at once: the engine decodes their answers together
IMAGE_URL = "data:image/png;base64," + base64.b64encode((REPO_ROOT / "examples" / "thermal_person.png").read_bytes()).decode()

anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def field(valid: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly a valid value (so that a body gets past its first fields), one time in ten any JSON value."""
    return st.integers(0, 9).flatmap(lambda draw: anything if draw == 0 else valid)


part = st.one_of(
    st.fixed_dictionaries({"type": field(st.just("text")), "text": field(st.text(max_size=30))}),
    st.fixed_dictionaries({"type": field(st.just("image_url")), "image_url": field(st.fixed_dictionaries({"url": field(st.just(IMAGE_URL))}))}),
    st.fixed_dictionaries(
        {"type": field(st.just("input_audio")), "input_audio": field(st.fixed_dictionaries({"data": anything, "format": field(st.just("wav"))}))}
    ),
    st.fixed_dictionaries({"type": field(st.just("video_url")), "video_url": anything}),
    st.fixed_dictionaries(
        {"type": field(st.just("file")), "file": field(st.fixed_dictionaries({"file_data": anything, "filename": anything}))},
        optional={"modality": field(st.sampled_from(["image", "thermal", "depth", "imu", "audio", "video"]))},
    ),
    anything,
)
question = st.text(min_size=1, max_size=40) | st.lists(part, max_size=3).map(lambda parts: [{"type": "text", "text": "What is it?"}, *parts])
user = st.fixed_dictionaries({"role": field(st.just("user")), "content": field(question)})
assistant = st.fixed_dictionaries({"role": field(st.just("assistant")), "content": field(st.text(max_size=30))})
system = st.fixed_dictionaries({"role": field(st.sampled_from(["system", "developer"])), "content": field(st.text(max_size=30))})
messages = st.tuples(st.lists(system, max_size=1), st.lists(st.tuples(user, assistant), max_size=2), user).map(
    lambda t: [*t[0], *(m for pair in t[1] for m in pair), t[2]]
)
body = st.fixed_dictionaries(
    {"model": field(st.just(MODEL)), "messages": field(messages), "max_tokens": field(st.integers(1, 4))},
    optional={
        "temperature": field(st.floats(0, 2)),
        "top_p": field(st.floats(0, 1)),
        "seed": field(st.integers(0, 2**32)),
        "stop": field(st.text(min_size=1, max_size=3) | st.lists(st.text(min_size=1, max_size=3), max_size=4)),
        "stream": field(st.booleans()),
        "stream_options": field(st.fixed_dictionaries({"include_usage": field(st.booleans())})),
        "n": field(st.just(1)),
        "weights": field(st.dictionaries(st.sampled_from(["image", "audio", "thermal"]), st.floats(-2, 2) | st.lists(st.floats(-2, 2), max_size=2))),
    },
)


@pytest.fixture(scope="module")
def app(tiny_config: ModelConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    app = App(tiny_config, tmp_path_factory.mktemp("fuzz"))
    yield app
    app.stop()


def count(default: int) -> int:
    """How many bodies a run sends: PANDAGPT_FUZZ_COUNT, or the run's default."""
    return int(COUNT) if COUNT else default


def send(http: httpx.Client, content: bytes, timeout: float) -> tuple[int, str, str]:
    """POST one body to /v1/chat/completions and read the whole answer: (status, content type, text)."""
    with http.stream("POST", "v1/chat/completions", content=content, headers={"content-type": "application/json"}, timeout=timeout) as response:
        text = response.read().decode(errors="replace")
    return response.status_code, response.headers.get("content-type", ""), text


def fault(status: int, content_type: str, text: str) -> str | None:
    """What is wrong with an answer, or None for a 200 (its stream or whole answer complete, each
    chunk or the answer as the `openai` package's types read it) or a 4xx in OpenAI's error shape."""
    if status >= 500:
        return f"a {status}"
    try:
        if status != 200:
            error = json.loads(text)["error"]
            shaped = set(error) == {"message", "type", "param", "code"} and isinstance(error["message"], str) and error["message"]
            return None if shaped else "a 4xx not in OpenAI's error shape"
        if content_type.startswith("text/event-stream"):
            events = [line.removeprefix("data: ") for line in text.splitlines() if line.startswith("data: ")]
            if not events or events[-1] != "[DONE]":
                return "a stream that does not end with [DONE]"
            chunks = [ChatCompletionChunk.model_validate_json(event) for event in events[:-1]]
            reasons = [choice.finish_reason for chunk in chunks for choice in chunk.choices if choice.finish_reason]
            return None if reasons in (["stop"], ["length"]) else f"a stream whose finish reasons are {reasons}"
        answer = ChatCompletion.model_validate_json(text)
        return None if answer.choices[0].finish_reason in ("stop", "length") else f"finish reason {answer.choices[0].finish_reason!r}"
    except (ValueError, KeyError, TypeError, IndexError, pydantic.ValidationError) as error:
        return f"not OpenAI-shaped: {error!r}"[:300]


def check(app: App, content: bytes) -> None:
    """One request: a 200 (its stream or whole answer complete) or a 4xx in OpenAI's shape."""
    with httpx.Client(base_url=app.url) as http:
        status, content_type, text = send(http, content, timeout=20)
    assert fault(status, content_type, text) is None, (fault(status, content_type, text), status, text[:400], content[:400])


def test_the_check_refuses_what_is_not_openai_shaped() -> None:
    """The verdict both runs rest on: a 5xx, an error of another shape, a whole answer or a stream that
    the `openai` package's types do not read, or a stream cut before [DONE], is each a fault."""
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": MODEL}
    done = {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    stream = lambda *events: "".join(f"data: {event}\n\n" for event in events)  # noqa: E731
    answer = {
        **chunk,
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "length"}],
    }
    error = {"error": {"message": "No.", "type": "invalid_request_error", "param": None, "code": None}}
    assert fault(200, "application/json", json.dumps(answer)) is None
    assert fault(200, "text/event-stream", stream(json.dumps(done), "[DONE]")) is None
    assert fault(400, "application/json", json.dumps(error)) is None
    for status, content_type, text in [
        (500, "application/json", json.dumps(error)),
        (400, "application/json", json.dumps({"detail": "No."})),
        (400, "text/plain", "Bad request"),
        (200, "application/json", json.dumps({**answer, "choices": []})),
        (200, "application/json", json.dumps({**answer, "object": "chat.completion.chunk"})),
        (200, "text/event-stream", stream(json.dumps(done))),
        (200, "text/event-stream", stream(json.dumps(error), "[DONE]")),
        (200, "text/event-stream", stream(json.dumps({**done, "choices": []}), "[DONE]")),
    ]:
        assert fault(status, content_type, text), (status, text)


def seeded(test):
    """With PANDAGPT_FUZZ_SEED, hypothesis draws the default run's examples from that seed."""
    return seed(int(SEED))(test) if SEED else test


@seeded
@settings(
    max_examples=count(300),
    deadline=None,
    derandomize=SEED is None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=body)
def test_generated_bodies_get_an_answer_or_an_openai_shaped_4xx(app: App, body: dict) -> None:
    check(app, json.dumps(body).encode())


class CheapBodies:
    """Bodies of `body`'s shape, drawn with `random.Random(seed)` rather than hypothesis: under 1 ms
    a body where hypothesis takes 15-35 ms, so that the long run's 10,000 fit CI's long step. The same
    fields, parts and sizes; edge values of its own (huge and negative integers, infinities, control and
    astral characters); any JSON value in any field one time in ten; no shrinking (a failing body is
    reported whole)."""

    CHARACTERS = "aZ09 _-.,:;!?\"'\\/{}[]<>\n\t\r\x00\x7f\u00e9\u4e2d\u2028\ufeff\U0001f600"
    INTEGERS = (0, 1, -1, 2, 4, 255, 256, 2**31, 2**32, 2**53 + 1, 2**63, -(2**63), 10**30)
    FLOATS = (0.0, -0.0, 0.5, 1.0, 2.0, 1e-305, 5e-324, 1e308, -1e308, float("inf"), float("-inf"))

    def __init__(self, seed_value: int) -> None:
        self.random = random.Random(seed_value)

    def __iter__(self) -> Iterator[bytes]:
        while True:
            yield json.dumps(self.body()).encode()

    def chance(self, one_in: int) -> bool:
        return self.random.randrange(one_in) == 0

    def text(self, max_size: int, min_size: int = 0) -> str:
        pick = self.random
        return "".join(
            pick.choice(self.CHARACTERS) if pick.random() < 0.8 else chr(pick.choice((pick.randrange(0xD800), pick.randrange(0xE000, 0x110000))))
            for _ in range(pick.randint(min_size, max_size))
        )

    def integer(self, low: int | None = None, high: int | None = None) -> int:
        if low is not None and high is not None:
            return self.random.randint(low, high)
        return self.random.choice(self.INTEGERS) * self.random.choice((1, -1)) if self.chance(2) else self.random.randint(-1000, 1000)

    def number(self, low: float | None = None, high: float | None = None) -> float:
        if low is not None and high is not None:
            return self.random.choice((low, high)) if self.chance(4) else self.random.uniform(low, high)
        return self.random.choice(self.FLOATS) if self.chance(2) else self.random.uniform(-1e6, 1e6)

    def anything(self, depth: int = 0) -> object:
        """Any JSON value (and infinities, which json.dumps writes as bare `Infinity`): leaves, or lists
        and objects of up to 3 of them, two levels deep at most."""
        kind = self.random.randrange(7 if depth < 2 else 5)
        if kind == 5:
            return [self.anything(depth + 1) for _ in range(self.random.randint(0, 3))]
        if kind == 6:
            return {self.text(8): self.anything(depth + 1) for _ in range(self.random.randint(0, 3))}
        return (None, self.chance(2), self.integer(), self.number(), self.text(20))[kind]

    def field(self, valid: Callable[[], object]) -> object:
        """Mostly a valid value, one time in ten any JSON value (as `field` does for hypothesis)."""
        return self.anything() if self.chance(10) else valid()

    def part(self) -> object:
        f, kind = self.field, self.random.randrange(6)
        if kind == 0:
            return {"type": f(lambda: "text"), "text": f(lambda: self.text(30))}
        if kind == 1:
            return {"type": f(lambda: "image_url"), "image_url": f(lambda: {"url": f(lambda: IMAGE_URL)})}
        if kind == 2:
            return {"type": f(lambda: "input_audio"), "input_audio": f(lambda: {"data": self.anything(), "format": f(lambda: "wav")})}
        if kind == 3:
            return {"type": f(lambda: "video_url"), "video_url": self.anything()}
        if kind == 4:
            file = {"type": f(lambda: "file"), "file": f(lambda: {"file_data": self.anything(), "filename": self.anything()})}
            if self.chance(2):
                file["modality"] = f(lambda: self.random.choice(["image", "thermal", "depth", "imu", "audio", "video"]))
            return file
        return self.anything()

    def question(self) -> object:
        if self.chance(2):
            return self.text(40, min_size=1)
        return [{"type": "text", "text": "What is it?"}, *(self.part() for _ in range(self.random.randint(0, 3)))]

    def message(self, roles: Callable[[], str], content: Callable[[], object]) -> dict:
        return {"role": self.field(roles), "content": self.field(content)}

    def messages(self) -> list:
        user = lambda: self.message(lambda: "user", self.question)  # noqa: E731
        said = [self.message(lambda: self.random.choice(["system", "developer"]), lambda: self.text(30)) for _ in range(self.random.randint(0, 1))]
        for _ in range(self.random.randint(0, 2)):
            said += [user(), self.message(lambda: "assistant", lambda: self.text(30))]
        return [*said, user()]

    def body(self) -> dict:
        f, pick = self.field, self.random
        weight = lambda: self.number(-2, 2)  # noqa: E731
        optional = {
            "temperature": lambda: f(lambda: self.number(0, 2)),
            "top_p": lambda: f(lambda: self.number(0, 1)),
            "seed": lambda: f(lambda: self.integer(0, 2**32)),
            "stop": lambda: f(lambda: self.text(3, 1) if self.chance(2) else [self.text(3, 1) for _ in range(pick.randint(0, 4))]),
            "stream": lambda: f(lambda: self.chance(2)),
            "stream_options": lambda: f(lambda: {"include_usage": f(lambda: self.chance(2))}),
            "n": lambda: f(lambda: 1),
            "weights": lambda: f(
                lambda: {
                    kind: weight() if self.chance(2) else [weight() for _ in range(pick.randint(0, 2))]
                    for kind in pick.sample(["image", "audio", "thermal"], pick.randint(0, 3))
                }
            ),
        }
        made = {"model": f(lambda: MODEL), "messages": f(self.messages), "max_tokens": f(lambda: self.integer(1, 4))}
        return {**made, **{name: value() for name, value in optional.items() if self.chance(2)}}


@pytest.mark.soak
def test_long_run_ten_thousand_generated_bodies_no_5xx_every_answer_openai_shaped(app: App, tmp_path: Path) -> None:
    """PANDAGPT_FUZZ_COUNT bodies (10,000) from PANDAGPT_FUZZ_SEED (0), generated first, then sent
    from 8 clients at once: not one 5xx, every answer OpenAI-shaped, none counted as our fault."""
    number, seed_value = count(10_000), int(SEED or 0)
    started = time.monotonic()
    bodies = list(itertools.islice(CheapBodies(seed_value), number))
    made = time.monotonic()
    local = threading.local()

    def one(content: bytes) -> tuple[int, str | None]:
        if not hasattr(local, "http"):
            local.http = httpx.Client(base_url=app.url)
        try:
            status, content_type, text = send(local.http, content, timeout=120)
        except httpx.HTTPError as error:  # no answer at all (the connection dropped, or none in 120 s)
            return 0, f"no answer: {error!r}"
        why = fault(status, content_type, text)
        return status, why and f"{why}: {text[:300]}"

    with ThreadPoolExecutor(LONG_CLIENTS) as pool:
        outcomes = list(pool.map(one, bodies))
    sent = time.monotonic()
    statuses = collections.Counter(status for status, _ in outcomes)
    failed = [(why, body) for (_, why), body in zip(outcomes, bodies) if why]
    (tmp_path / "failed-bodies.jsonl").write_text("".join(json.dumps({"why": why, "body": body.decode()}) + "\n" for why, body in failed))
    print(
        f"fuzz: {number} bodies (seed {seed_value}) generated in {made - started:.0f} s, sent from {LONG_CLIENTS} clients in {sent - made:.0f} s; "
        f"statuses {dict(sorted(statuses.items()))}; {len(failed)} failed"
    )
    assert not [status for status in statuses if status >= 500], f"{len(failed)} failed, the first bodies whole: {failed[:3]}"
    assert not failed, f"{len(failed)} answers not OpenAI-shaped (or none came), the first bodies whole: {failed[:3]}"
    test_after_the_fuzz_the_app_answers_and_counted_no_fault(app)


@pytest.mark.parametrize(
    "content",
    [
        b'{"model": "pandagpt-tiny", "messages": [{"role": "user", "content": "\xff\xfe"}]}',  # not UTF-8
        b"[" * 100_000 + b"]" * 100_000,  # deeper than the JSON parser goes
        b'{"model": "pandagpt-tiny", "messages": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
        b'{"model": "pandagpt-tiny", "messages": [{"role": "user", "content": "hi"}], "seed": 1000000000000000000000000000000}',
        b'{"model": "pandagpt-tiny", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": 5}]}]}',
        b'{"model": "pandagpt-tiny", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
        b"",
        b'{"model": "pandagpt-tiny", "messages": [{"role": "user", "content": "0"}], "max_tokens": 1, "temperature": 1.2340267186061885e-305}',
    ],
    ids=["not-utf8", "deep-list", "deep-messages", "huge-seed", "image-url-not-object", "nan", "empty", "temperature-near-zero"],
)
def test_bodies_that_were_500s_are_answered_or_400s(app: App, content: bytes) -> None:
    check(app, content)


def test_after_the_fuzz_the_app_answers_and_counted_no_fault(app: App) -> None:
    question = {"model": MODEL, "messages": [{"role": "user", "content": "Still there?"}], "max_tokens": 4}
    answer = httpx.post(app.url + "v1/chat/completions", json=question, timeout=60)
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"]
    assert metric(app, 'pandagpt_errors_total{endpoint="openai",kind="internal"}') == 0
