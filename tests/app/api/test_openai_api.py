"""The OpenAI-compatible API and /metrics of the launched app, with the official `openai` package
as a user would run it (the MCP tool: test_mcp.py)."""

from __future__ import annotations

import base64
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from gradio_client import Client, handle_file

from pandagpt_demo.config import ModelConfig, PromptTemplate
from pandagpt_demo.model.conversation import Conversation, Turn
from pandagpt_demo.model.pandagpt import PandaGPT
from tests.conftest import REPO_ROOT
from tests.launched import App
from tests.waiting import wait_until

KEY = "test-key"
MODEL = "pandagpt-tiny"
EXAMPLES = REPO_ROOT / "examples"
IMAGE, AUDIO, THERMAL = EXAMPLES / "sunset.jpg", EXAMPLES / "dog_bark.wav", EXAMPLES / "thermal_person.png"
GREEDY = dict(temperature=0.0, top_p=0.01)


@pytest.fixture(scope="module")
def app(tiny_config: ModelConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """One app with a key, remote media on (loopback allowed: its own files are the remote ones), 1 MB
    files, and one row plus one waiting place (so a third long answer finds the queue full); every
    forward pass slowed by 10 ms."""
    remote = ["--allow-remote-media", "--remote-media-allow", "127.0.0.1"]
    flags = ["--api-key", KEY, *remote, "--max-file-mb", "1", "--concurrency", "1", "--queue-size", "1"]
    app = App(tiny_config, tmp_path_factory.mktemp("openai"), *flags, slow_step=0.01)
    yield app
    app.stop()


def client(app: App, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=app.url + "v1", api_key=key, max_retries=0)


def data_url(path: Path, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def image_part(path: Path = IMAGE, mime: str = "image/jpeg") -> dict:
    return {"type": "image_url", "image_url": {"url": data_url(path, mime)}}


def ask(app: App, content: object, **settings: object) -> openai.types.chat.ChatCompletion:
    return client(app).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}], **{**GREEDY, **settings})


def chat(app: App, question: str, **inputs: object) -> str:
    """The same question through /chat (gradio_client), greedy."""
    return Client(app.url, verbose=False).predict(question, api_name="/chat", **GREEDY, **inputs).strip()


def test_models_lists_the_one_served_and_the_key_guards_v1(app: App) -> None:
    assert [m.id for m in client(app).models.list()] == [MODEL]
    with pytest.raises(openai.AuthenticationError, match="Invalid or missing API key"):
        client(app, key="wrong").models.list()
    with pytest.raises(openai.AuthenticationError):
        client(app, key="wrong").chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    with pytest.raises(openai.NotFoundError, match="this server serves 'pandagpt-tiny'"):
        client(app).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    assert client(app).models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError, match="this server serves 'pandagpt-tiny'"):
        client(app).models.retrieve("gpt-4o")


def test_every_v1_answer_is_openai_shaped_and_the_key_is_read_as_rfc_6750_says(app: App) -> None:
    def shaped(response: httpx.Response, status: int, code: str) -> httpx.Response:
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["code"] == code and error["message"]
        return response

    v1, key = app.url + "v1", {"authorization": f"Bearer {KEY}"}
    assert httpx.get(f"{v1}/models", headers={"authorization": f"bearer   {KEY}"}).status_code == 200, "the scheme in any case"
    refused = shaped(httpx.get(f"{v1}/models", headers={"authorization": f"Basic {KEY}"}), 401, "invalid_api_key")
    assert refused.headers["www-authenticate"] == "Bearer"
    shaped(httpx.get(f"{v1}/models"), 401, "invalid_api_key")
    wrong_method = shaped(httpx.get(f"{v1}/chat/completions", headers=key), 405, "method_not_allowed")
    assert wrong_method.headers["allow"] == "POST"
    assert shaped(httpx.delete(f"{v1}/models", headers=key), 405, "method_not_allowed").headers["allow"] == "GET"
    unknown = shaped(httpx.post(f"{v1}/embeddings", headers=key, json={"model": MODEL, "input": "hi"}), 404, "not_found")
    assert "POST /v1/chat/completions" in unknown.json()["error"]["message"]
    shaped(httpx.get(f"{v1}/models/gpt-4o", headers=key), 404, "model_not_found")


def test_the_openapi_document_describes_the_request_with_its_extensions(app: App) -> None:
    document = httpx.get(app.url + "v1/openapi.json").json()
    operation = document["paths"]["/chat/completions"]["post"]
    assert document["servers"] == [{"url": "/v1"}]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ChatCompletionRequest"}
    assert operation["responses"]["400"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
    assert operation["security"] == [{"HTTPBearer": []}], "the key this app was started with"
    schemas = document["components"]["schemas"]
    request = schemas["ChatCompletionRequest"]["properties"]
    assert request["messages"]["maxItems"] == 10_000 and "weights" in request and "Extension" in request["weights"]["description"]
    assert {"text", "image_url", "video_url", "input_audio", "file"} <= {
        s["properties"]["type"]["const"] for s in schemas.values() if "Part" in str(s.get("title"))
    }
    assert "modality" in schemas["FilePart"]["properties"]
    assert httpx.get(app.url + "v1/docs").status_code == 200


def test_a_greedy_answer_equals_chat_with_real_usage_and_the_stream_joins_to_it(app: App, tiny_model: PandaGPT) -> None:
    content = [{"type": "text", "text": "Describe this image."}, image_part()]
    whole = ask(app, content, max_tokens=12)
    answer = whole.choices[0].message.content
    assert answer == chat(app, "Describe this image.", image=handle_file(str(IMAGE)), max_new_tokens=12)
    before, after = tiny_model.prompt_ids(Conversation(PromptTemplate(), [Turn("Describe this image.")]), with_vector=True)
    assert whole.usage.prompt_tokens == len(before) + 1 + len(after), "the prompt's positions, the fused vector one of them"
    assert whole.usage.completion_tokens == 12 and whole.choices[0].finish_reason == "length"
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + 12

    chunks = list(
        client(app).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": content}], max_tokens=12, stream=True, stream_options={"include_usage": True}, **GREEDY
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == answer
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12


def test_image_audio_and_a_thermal_file_part_in_one_message_equal_chat(app: App) -> None:
    content = [
        {"type": "text", "text": "What do you see and hear?"},
        image_part(),
        {"type": "input_audio", "input_audio": {"data": base64.b64encode(AUDIO.read_bytes()).decode(), "format": "wav"}},
        {"type": "file", "file": {"file_data": data_url(THERMAL, "image/png"), "filename": "person.png"}, "modality": "thermal"},
    ]
    answer = ask(app, content, max_tokens=10, extra_body={"weights": {"audio": 0.5}}).choices[0].message.content
    files = dict(image=handle_file(str(IMAGE)), audio=handle_file(str(AUDIO)), thermal=handle_file(str(THERMAL)), weights={"audio": 0.5})
    assert answer == chat(app, "What do you see and hear?", max_new_tokens=10, **files)
    assert answer != ask(app, content, max_tokens=10).choices[0].message.content, "the weight reaches the model"


def test_a_multi_turn_history_is_rendered_as_the_chat_history_and_system_messages_are_ignored(app: App) -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [{"type": "text", "text": "What is this?"}, image_part()]},
        {"role": "assistant", "content": "A sunset."},
        {"role": "user", "content": "What colour is the sky?"},
    ]
    answer = client(app).chat.completions.create(model=MODEL, messages=messages, max_tokens=10, **GREEDY).choices[0].message.content
    expected = chat(app, "What colour is the sky?", image=handle_file(str(IMAGE)), history=[["What is this?", "A sunset."]], max_new_tokens=10)
    assert answer == expected


def test_a_stop_string_ends_the_answer_before_it(app: App) -> None:
    full = ask(app, "Tell me a story.", max_tokens=24).choices[0].message.content
    stop = full.split()[3]
    cut = ask(app, "Tell me a story.", max_tokens=24, stop=[stop])
    assert cut.choices[0].message.content == full[: full.index(stop)] and cut.choices[0].finish_reason == "stop"


def test_a_seed_makes_a_sampled_answer_repeatable(app: App) -> None:
    sampled = dict(temperature=1.0, top_p=0.95, max_tokens=12)
    first, again = (ask(app, "Tell me a story.", seed=7, **sampled).choices[0].message.content for _ in range(2))
    others = {ask(app, "Tell me a story.", seed=seed, **sampled).choices[0].message.content for seed in (8, 9, 10)}
    assert first == again and others != {first}


@pytest.mark.parametrize(
    ("settings", "content", "message", "param"),
    [
        ({"temperature": 5}, "Hi", "temperature must be at most 2, not 5", "temperature"),
        ({"n": 2}, "Hi", "n must be 1", "n"),
        ({"max_tokens": 0}, "Hi", "max_tokens: Input should be greater than or equal to 1", "max_tokens"),
        ({"max_tokens": 4096}, "Hi", "max_tokens must be at most 1024", "max_tokens"),
        (
            {},
            [{"type": "text", "text": "Hi"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,bm90IGFuIGltYWdl"}}],
            "image-1.png",
            None,
        ),
        (
            {},
            [{"type": "text", "text": "Hi"}, {"type": "image_url", "image_url": {"url": "not a url"}}],
            r"content\[1\].image_url.url",
            "messages[0].content[1].image_url.url",
        ),
        (
            {},
            [{"type": "text", "text": "Hi"}, {"type": "image_url", "image_url": "data:..."}],
            "valid dictionary",
            "messages[0].content[1].image_url",
        ),
        ({}, [image_part()], "no text", "messages[0]"),
        (
            {},
            [{"type": "text", "text": "Hi"}, {"type": "file", "file": {"file_data": "AAAA", "filename": "x.png"}, "modality": "smell"}],
            "modality",
            "messages[0].content[1].modality",
        ),
    ],
)
def test_a_bad_setting_or_file_is_a_400_that_names_it(app: App, settings: dict, content: object, message: str, param: str | None) -> None:
    with pytest.raises(openai.BadRequestError, match=message) as refused:
        ask(app, content, **settings)
    assert refused.value.param == param


def test_a_file_over_the_limit_is_a_413(app: App, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (1024 * 1024 + 10))
    with pytest.raises(openai.APIStatusError, match="larger than the 1 MB") as caught:
        ask(app, [{"type": "text", "text": "Hi"}, image_part(big, "image/png")])
    assert caught.value.status_code == 413


def test_a_history_of_9_999_messages_is_answered_from_its_newest_turns_and_a_huge_question_refused(app: App, tiny_config: ModelConfig) -> None:
    """Work bounded by the context, not the request: the oldest turns give way (context.py), a
    question longer than any prompt could be is refused before it is tokenized, and past the
    schema's 10,000 messages or the server's million characters nothing is read further. Raw HTTP:
    the `openai` SDK's own preparation of 10,000 messages takes longer than the server's answer."""
    messages = [{"role": role, "content": f"{role} turn {i}"} for i in range(4_999) for role in ("user", "assistant")]
    body = {"model": MODEL, "messages": [*messages, {"role": "user", "content": "And now?"}], "max_tokens": 4, **GREEDY}
    headers = {"authorization": f"Bearer {KEY}"}
    answer = httpx.post(app.url + "v1/chat/completions", json=body, headers=headers, timeout=120)
    assert answer.status_code == 200, answer.text
    assert answer.json()["usage"]["prompt_tokens"] + 4 <= tiny_config.spec.context_length
    history = [[f"Question {i}?", f"Answer {i}."] for i in range(10_000)]
    assert chat(app, "And now?", max_new_tokens=4, history=history), "/chat's history takes the same path"

    def refused(messages: list[dict]) -> dict:
        response = httpx.post(app.url + "v1/chat/completions", json={**body, "messages": messages}, headers=headers, timeout=120)
        assert response.status_code in (400, 413), response.text
        return {"status": response.status_code, **response.json()["error"]}

    too_many = refused([{"role": "user", "content": "Hi"}] * 10_001)
    assert (too_many["status"], too_many["param"]) == (400, "messages") and "at most 10000 items" in too_many["message"]
    long = refused([{"role": "user", "content": "word " * 190_000}])
    assert long["status"] == 400 and "the prompt needs at least" in long["message"]
    huge = refused([{"role": "user", "content": "word " * 2_000_000}])
    assert (huge["status"], huge["param"]) == (413, "messages") and "this server takes at most 1,000,000" in huge["message"]


def test_a_remote_image_url_is_fetched_when_allowed(app: App) -> None:
    url = f"{app.url}gradio_api/file={IMAGE}"
    remote = ask(app, [{"type": "text", "text": "Describe this image."}, {"type": "image_url", "image_url": {"url": url}}], max_tokens=8)
    assert (
        remote.choices[0].message.content
        == ask(app, [{"type": "text", "text": "Describe this image."}, image_part()], max_tokens=8).choices[0].message.content
    )


def test_a_full_queue_is_a_429_and_the_streams_a_client_drops_stop_decoding(app: App) -> None:
    def long_stream() -> openai.Stream:
        return client(app).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Go on"}], max_tokens=500, stream=True, **GREEDY
        )

    decoding = long_stream()
    next(iter(decoding))  # its first chunk: it holds the one row
    waiting: list[openai.Stream] = []
    threading.Thread(target=lambda: waiting.append(long_stream()), daemon=True).start()
    wait_until(lambda: engine(app)["waiting"] == 1)
    with pytest.raises(openai.RateLimitError, match="(?i)busy|queue|wait"):
        ask(app, "And me?", max_tokens=2)
    decoding.close()
    wait_until(lambda: bool(waiting))
    waiting[0].close()
    wait_until(lambda: engine(app)["active"] == 0 and engine(app)["waiting"] == 0)
    now = ask(app, "Now?", max_tokens=2)  # the row and the queue are free again: a whole answer, /chat's own
    assert (now.choices[0].finish_reason, now.usage.completion_tokens) == ("length", 2)
    assert now.choices[0].message.content == chat(app, "Now?", max_new_tokens=2) != ""


def engine(app: App) -> dict:
    return httpx.get(app.url + "readyz").json()["engine"]


def metric(app: App, line: str) -> float:
    for row in httpx.get(app.url + "metrics").text.splitlines():
        if row.startswith(line + " "):
            return float(row.split()[-1])
    return 0.0


def test_metrics_move_as_requests_are_served(app: App) -> None:
    names = ['pandagpt_requests_total{endpoint="openai"}', 'pandagpt_errors_total{endpoint="openai",kind="bad_setting"}']
    names += ["pandagpt_generated_tokens_total", 'pandagpt_encode_seconds_count{modality="image"}', "pandagpt_time_to_first_token_seconds_count"]
    names += ['pandagpt_requests_total{endpoint="page"}']
    before = {name: metric(app, name) for name in names}
    ask(app, [{"type": "text", "text": "Hi"}, image_part()], max_tokens=3)
    with pytest.raises(openai.BadRequestError):
        ask(app, "Hi", temperature=9)
    Client(app.url, verbose=False).predict({"text": "Hi", "files": []}, 3, 0.01, 0.0, api_name="/send")
    after = {name: metric(app, name) for name in names}
    assert after[names[0]] == before[names[0]] + 2 and after[names[1]] == before[names[1]] + 1
    assert after[names[2]] >= before[names[2]] + 6, "3 tokens for /v1 and 3 for the page"
    assert after[names[3]] == before[names[3]] + 1 and after[names[4]] == before[names[4]] + 2 and after[names[5]] == before[names[5]] + 1
    text = httpx.get(app.url + "metrics").text
    assert "pandagpt_model_loaded 1.0" in text and "pandagpt_queue_depth" in text and "pandagpt_active_rows" in text


def test_while_draining_v1_answers_503(tiny_config: ModelConfig, tmp_path: Path) -> None:
    app = App(tiny_config, tmp_path, "--drain-seconds", "20", slow_step=0.02)
    try:
        stream = openai.OpenAI(base_url=app.url + "v1", api_key="none", max_retries=0).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Go on"}], max_tokens=400, stream=True
        )
        next(iter(stream))
        app.process.send_signal(signal.SIGTERM)
        wait_until(lambda: httpx.get(app.url + "readyz").status_code == 503, what="the app draining")
        with pytest.raises(openai.InternalServerError, match="(?i)restart") as caught:
            openai.OpenAI(base_url=app.url + "v1", api_key="none", max_retries=0).chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=2
            )
        assert caught.value.status_code == 503
        stream.close()
    finally:
        app.stop()
