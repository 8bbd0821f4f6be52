"""`/v1/chat/completions` fuzzed: generated bodies, valid and not, sent to the launched app.

Every answer must be a success or OpenAI's error shape with a 4xx (a client's mistake is never a
500, and never counted as our fault), each within a few seconds, and the app answers normally
after. The bodies are built around the request's real shape (roles, content parts, sampling
fields, the extensions) with any JSON value in any place, so most reach deep into the reading of
a request rather than stopping at its first field. The examples are the same on every run (CI
stays a verdict on the change); to explore further, raise `max_examples` or drop `derandomize`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pandagpt_demo.config import ModelConfig
from tests.app.api.test_openai_api import MODEL, metric
from tests.conftest import REPO_ROOT
from tests.launched import App

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


def check(app: App, content: bytes) -> None:
    """One request: a 200 (its stream or whole answer complete) or a 4xx in OpenAI's shape."""
    with httpx.stream("POST", app.url + "v1/chat/completions", content=content, headers={"content-type": "application/json"}, timeout=20) as response:
        text = response.read().decode()
    assert response.status_code < 500, (response.status_code, text, content[:400])
    if response.status_code != 200:
        error = json.loads(text)["error"]
        assert set(error) == {"message", "type", "param", "code"} and isinstance(error["message"], str) and error["message"], text
    elif response.headers["content-type"].startswith("text/event-stream"):
        assert text.rstrip().endswith("data: [DONE]") and '"error"' not in text, text
    else:
        assert json.loads(text)["choices"][0]["finish_reason"] in ("stop", "length"), text


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=body)
def test_generated_bodies_get_an_answer_or_an_openai_shaped_4xx(app: App, body: dict) -> None:
    check(app, json.dumps(body).encode())


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
