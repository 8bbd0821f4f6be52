"""Reading an OpenAI chat-completions body, without a server: its schema's refusals as /v1 words
them (the field at fault as `param`), then turns, media parts, settings, stops."""

from __future__ import annotations

import base64
import json

import pytest

from pandagpt_demo.app.answering.settings import AnswerSettings
from pandagpt_demo.app.api.openai.completion import Reply, StopStrings
from pandagpt_demo.app.api.openai.refusals import HttpError, error_body
from pandagpt_demo.app.api.openai.request import parse_body, read_request
from pandagpt_demo.config import SamplingParams
from pandagpt_demo.errors import BadInput, BadSetting, Busy, TooLarge, Unavailable
from pandagpt_demo.model.modalities import Modality

PNG = "data:image/png;base64," + base64.b64encode(b"png bytes").decode()


def body(*messages: dict, **fields: object) -> dict:
    return {"model": "pandagpt-7b", "messages": list(messages), **fields}


def read(payload: object, max_file_bytes: int = 1000, max_text_chars: int = 1000):
    """`payload` parsed and validated as /v1 does, then read."""
    return read_request(parse_body("application/json", json.dumps(payload).encode()), AnswerSettings(), max_file_bytes, max_text_chars)


def test_turns_pair_up_system_messages_are_ignored_and_every_users_media_are_kept() -> None:
    request = read(
        body(
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": PNG}}]},
            {"role": "assistant", "content": [{"type": "text", "text": "A cat."}]},
            {"role": "user", "content": "And this sound?"},
            {
                "role": "user",
                "content": [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "mp3"}}, {"type": "text", "text": "Quick."}],
            },
        )
    )
    assert request.history == [("What is this?", "A cat.")]
    assert request.question == "And this sound?\nQuick.", "consecutive user messages are one question"
    assert [(m.kind, m.name, m.data) for m in request.media] == [
        (Modality.IMAGE, "image-1.png", b"png bytes"),
        (Modality.AUDIO, "audio-2.mp3", b"\0\0\0"),
    ]
    defaults = AnswerSettings()
    assert request.params == SamplingParams(defaults.max_new_tokens, defaults.top_p, defaults.temperature)
    assert not request.stream and request.stop == ()


def test_settings_the_extension_file_part_and_a_remote_url() -> None:
    request = read(
        body(
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Walk?"},
                    {"type": "file", "file": {"file_data": "AAAA", "filename": "dir/walk.csv"}, "modality": "imu"},
                    {"type": "file", "file": {"file_data": PNG, "filename": "scan"}},
                    {"type": "video_url", "video_url": {"url": "https://example.org/clips/ball.mp4?x=1"}},
                ],
            },
            max_completion_tokens=7,
            max_tokens=99,
            temperature=0,
            top_p=0.5,
            seed=3,
            stop="###",
            stream=True,
            stream_options={"include_usage": True},
            weights={"imu": 0.5},
        )
    )
    walk, scan, clip = request.media
    assert (walk.kind, walk.name) == (Modality.IMU, "walk.csv"), "a file's own name, without its folders"
    assert (scan.kind, scan.name) == (None, "scan.png"), "no modality: guessed later from the file; the suffix from its type"
    assert (clip.kind, clip.name, clip.url, clip.data) == (Modality.VIDEO, "ball.mp4", "https://example.org/clips/ball.mp4?x=1", None)
    assert request.params == SamplingParams(7, 0.5, 0.0, 3), "max_completion_tokens wins over max_tokens"
    assert request.stop == ("###",) and request.stream and request.include_usage and request.weights == {"imu": 0.5}


TEXT = {"type": "text", "text": "a"}


def user(*parts: dict) -> dict:
    return {"role": "user", "content": [TEXT, *parts]}


@pytest.mark.parametrize(
    ("payload", "error", "message", "param"),
    [
        ([], HttpError, "The request body: Input should be a valid dictionary", None),
        (body(), HttpError, "List should have at least 1 item", "messages"),
        ({"messages": [{"role": "user", "content": "a"}]}, HttpError, "model: Field required", "model"),
        (body({"role": "assistant", "content": "Hi"}), BadSetting, r"messages\[0\]: an assistant message must follow a user message", "messages[0]"),
        (
            body({"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}),
            BadSetting,
            "last message must be the user's",
            "messages[1]",
        ),
        (body({"role": "tool", "content": "x"}), HttpError, "Input tag 'tool' found using 'role' does not match", "messages[0]"),
        (body({"role": "user", "content": 5}), HttpError, "Input should be a valid string or Input should be a valid list", "messages[0].content"),
        (body({"role": "user", "content": [{"type": "image_url", "image_url": {"url": PNG}}]}), BadInput, "no text", "messages[0]"),
        (body(user({"type": "refusal"})), HttpError, "Input tag 'refusal' found using 'type'", "messages[0].content[1]"),
        (body(user({"type": "image_url", "image_url": 5})), HttpError, "valid dictionary", "messages[0].content[1].image_url"),
        (body(user({"type": "image_url"})), HttpError, "Field required", "messages[0].content[1].image_url"),
        (
            body(user({"type": "image_url", "image_url": {"url": "data:image/png;base64,@@"}})),
            BadInput,
            "not valid base64",
            "messages[0].content[1].image_url.url",
        ),
        (
            body(user({"type": "image_url", "image_url": {"url": "data:audio/wav;base64,AAAA"}})),
            BadInput,
            "'audio/wav' is not one PandaGPT reads as image",
            "messages[0].content[1].image_url.url",
        ),
        (
            body(user({"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 2000}})),
            TooLarge,
            "larger than",
            "messages[0].content[1].image_url.url",
        ),
        (
            body(user({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "ogg"}})),
            HttpError,
            "'wav' or 'mp3'",
            "messages[0].content[1].input_audio.format",
        ),
        (body(user({"type": "file", "file": {"file_id": "file-1"}})), HttpError, "file ids are not supported", "messages[0].content[1].file"),
        (
            body(user({"type": "file", "file": {"file_data": "AAAA", "filename": "walk"}})),
            BadSetting,
            "must end in the file's suffix",
            "messages[0].content[1].file.filename",
        ),
        (
            body(user({"type": "file", "file": {"file_data": "AAAA"}, "modality": "smell"})),
            HttpError,
            "Input should be 'image'",
            "messages[0].content[1].modality",
        ),
        (
            body(user(*[{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}] * 17)),
            BadSetting,
            "at most 16 files, not 17",
            "messages",
        ),
        (body({"role": "user", "content": "a" * 1001}), TooLarge, "1,001 characters", "messages"),
        (body({"role": "user", "content": "a"}, n=3), HttpError, "n must be 1", "n"),
        (body({"role": "user", "content": "a"}, stop=["a", "b", "c", "d", "e"]), HttpError, "at most 4 items", "stop"),
        (body({"role": "user", "content": "a"}, seed=1.5), HttpError, "valid integer", "seed"),
        (body({"role": "user", "content": "a"}, seed=2**64), HttpError, "less than or equal to 9223372036854775807", "seed"),
        (body({"role": "user", "content": "a"}, max_tokens=2.5), HttpError, "valid integer", "max_tokens"),
        (body({"role": "user", "content": "a"}, max_tokens=5000), BadSetting, "max_tokens must be at most 1024", "max_tokens"),
        (body({"role": "user", "content": "a"}, temperature=float("inf")), HttpError, "finite number", "temperature"),
        (body({"role": "user", "content": "a"}, temperature=3), BadSetting, "temperature must be at most 2", "temperature"),
        (body({"role": "user", "content": "a"}, weights={"smell": 1}), HttpError, "Input should be 'image'", "weights.smell"),
        (body({"role": "user", "content": "a"}, tools=[{"type": "function"}]), HttpError, "PandaGPT does not call tools", "tools"),
        (
            body({"role": "user", "content": "a"}, response_format={"type": "json_object"}),
            HttpError,
            "Input should be 'text'",
            "response_format.type",
        ),
        (
            body({"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "tool_calls": [{}]}),
            HttpError,
            "tool calls are not supported",
            "messages[1]",
        ),
    ],
)
def test_a_bad_body_is_refused_naming_the_field(payload: object, error: type, message: str, param: str | None) -> None:
    with pytest.raises(error, match=message) as refused:
        read(payload)
    assert refused.value.param == param
    assert error_body(refused.value)[1]["error"]["param"] == param


def test_stop_strings_cut_at_the_first_and_hold_back_a_possible_beginning() -> None:
    stops = StopStrings(("END", "\n\n"))
    assert stops.cut("Hello wor") == ("Hello wor", False)
    assert stops.cut("Hello E") == ("Hello ", False), "'E' may begin END: held back"
    assert stops.cut("Hello EN") == ("Hello ", False)
    assert stops.cut("Hello ENTER") == ("Hello ENTER", False), "it did not"
    assert stops.cut("One\n\nTwo END") == ("One", True), "the first stop string in the text wins"
    assert StopStrings(()).cut("anything") == ("anything", False)


def test_errors_map_to_openai_statuses_and_types() -> None:
    assert error_body(BadSetting("x"))[0] == 400 and error_body(BadSetting("x"))[1]["error"]["type"] == "invalid_request_error"
    assert error_body(TooLarge("x"))[0] == 413
    assert error_body(Busy("x")) == (429, {"error": {"message": "x", "type": "rate_limit_error", "param": None, "code": "busy"}})
    assert error_body(BadSetting("x", param="top_p"))[1]["error"]["param"] == "top_p"
    assert error_body(Unavailable("x"))[0] == 503 and error_body(Unavailable("x"))[1]["error"]["type"] == "server_error"
    status, document = error_body(RuntimeError("secret detail"))
    assert status == 500 and "secret detail" not in document["error"]["message"] and "Internal error (logged as" in document["error"]["message"]


def test_a_streamed_event_is_one_line_for_every_line_splitter() -> None:
    """Found by the 10,000-body fuzz run: an answer holding U+2028 (or U+0085, U+2029) was sent raw,
    as JSON allows, and a client reading lines as Python's splitlines (httpx's iter_lines) cut the
    event in two. They are escaped; the text reads back the same."""
    text = "a\u2028b\x85c\u2029d\ne\r\x0bf"
    event = Reply.sse({"choices": [{"delta": {"content": text}}]})
    assert event.endswith("\n\n") and len(event.splitlines()) == 2 and event.splitlines()[1] == ""
    assert json.loads(event.splitlines()[0].removeprefix("data: "))["choices"][0]["delta"]["content"] == text
