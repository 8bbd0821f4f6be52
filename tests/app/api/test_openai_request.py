"""Reading an OpenAI chat-completions body, without a server: turns, media parts, settings, stops."""

from __future__ import annotations

import base64

import pytest

from pandagpt_demo.app.answering.settings import AnswerSettings
from pandagpt_demo.app.api.openai.request import read_request
from pandagpt_demo.app.api.openai.routes import StopStrings, error_body
from pandagpt_demo.config import SamplingParams
from pandagpt_demo.errors import BadInput, BadSetting, Busy, TooLarge, Unavailable
from pandagpt_demo.model.modalities import Modality

PNG = "data:image/png;base64," + base64.b64encode(b"png bytes").decode()


def body(*messages: dict, **fields: object) -> dict:
    return {"model": "pandagpt-7b", "messages": list(messages), **fields}


def read(payload: dict, max_file_bytes: int = 1000):
    return read_request(payload, AnswerSettings(), max_file_bytes)


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


@pytest.mark.parametrize(
    ("payload", "error", "message"),
    [
        ([], BadSetting, "JSON object"),
        (body(), BadSetting, "messages must be a non-empty list"),
        (body({"role": "assistant", "content": "Hi"}), BadSetting, r"messages\[0\]: an assistant message must follow a user message"),
        (body({"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}), BadSetting, "last message must be the user's"),
        (body({"role": "tool", "content": "x"}), BadSetting, r"messages\[0\]: role must be"),
        (body({"role": "user", "content": [{"type": "image_url", "image_url": {"url": PNG}}]}), BadInput, "no text"),
        (
            body({"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "refusal"}]}),
            BadSetting,
            r"content\[1\]: unsupported content part",
        ),
        (
            body(
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@"}}]}
            ),
            BadInput,
            "not valid base64",
        ),
        (
            body(
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "data:audio/wav;base64,AAAA"}}],
                }
            ),
            BadInput,
            "'audio/wav' is not one PandaGPT reads as image",
        ),
        (
            body(
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 2000}}],
                }
            ),
            TooLarge,
            "larger than",
        ),
        (
            body(
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "ogg"}}],
                }
            ),
            BadSetting,
            "wav or mp3",
        ),
        (
            body({"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "file", "file": {"file_id": "file-1"}}]}),
            BadSetting,
            "file ids are not supported",
        ),
        (
            body({"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "file", "file": {"file_data": "AAAA", "filename": "walk"}}]}),
            BadSetting,
            "must end in the file's suffix",
        ),
        (body({"role": "user", "content": "a"}, n=3), BadSetting, "n must be 1"),
        (body({"role": "user", "content": "a"}, stop=["a", "b", "c", "d", "e"]), BadSetting, "at most 4"),
        (body({"role": "user", "content": "a"}, seed=1.5), BadSetting, "seed must be an integer"),
        (body({"role": "user", "content": "a"}, max_tokens=2.5), BadSetting, "max_tokens must be a whole number"),
        (body({"role": "user", "content": "a"}, tools=[{"type": "function"}]), BadSetting, "tools are not supported"),
        (body({"role": "user", "content": "a"}, response_format={"type": "json_object"}), BadSetting, "only text answers"),
    ],
)
def test_a_bad_body_is_refused_naming_what_is_wrong(payload: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        read(payload)


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
    assert error_body(Unavailable("x"))[0] == 503 and error_body(Unavailable("x"))[1]["error"]["type"] == "server_error"
    status, document = error_body(RuntimeError("secret detail"))
    assert status == 500 and "secret detail" not in document["error"]["message"] and "Internal error (logged as" in document["error"]["message"]
