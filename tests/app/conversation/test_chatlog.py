"""A chat's record: what the browser keeps and Export writes — text, settings, file names, kinds,
weights and sha256 only — and the refusal, by what is wrong, of a file this demo did not write."""

from __future__ import annotations

import copy
import json

import pytest

from pandagpt_demo.app.conversation.chatlog import RECORD_FORMAT, Attachment, Exchange, Used, Version, from_record, record_of
from pandagpt_demo.errors import BadInput
from pandagpt_demo.model.modalities import Modality


def _chat() -> tuple[list[Exchange], list[Attachment]]:
    photo = Attachment("photo.png", Modality.THERMAL, "a" * 64, weight=-0.5)
    sound = Attachment("rain.wav", Modality.AUDIO, "b" * 64)
    used = (Used.of(photo), Used.of(sound))
    exchanges = [
        Exchange("What is it?", [photo, sound], [Version("A cat.", used), Version("A dog.", used)], shown=0),
        Exchange("And now?", [], [Version("Still a cat.", (Used.of(photo),))]),
    ]
    return exchanges, [photo]


def test_a_record_holds_no_file_and_round_trips() -> None:
    exchanges, in_use = _chat()
    record = json.loads(json.dumps(record_of(exchanges, in_use, {"temperature": 0.5})))
    assert record["format"] == RECORD_FORMAT
    assert record["files"] == [
        {"name": "photo.png", "kind": "thermal", "sha256": "a" * 64, "weight": -0.5},
        {"name": "rain.wav", "kind": "audio", "sha256": "b" * 64, "weight": 1.0},
    ]
    back, back_in_use, settings = from_record(record)
    assert settings == {"temperature": 0.5}
    assert [(e.question, [v.text for v in e.versions], e.shown) for e in back] == [
        ("What is it?", ["A cat.", "A dog."], 0),
        ("And now?", ["Still a cat."], 0),
    ]
    assert back[0].versions[0].used == exchanges[0].versions[0].used
    assert back_in_use[0] is back[0].attached[0] and back_in_use[0].path is None, "files come back by name and sum, not by path"


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda r: r.update(format="something else"), "format is not"),
        (lambda r: r.pop("messages"), "the file has no valid 'messages'"),
        (lambda r: r["files"][0].update(kind="smell"), "file 1 has an unknown kind 'smell'"),
        (lambda r: r["files"][1].pop("sha256"), "file 2 has no valid 'sha256'"),
        (lambda r: r["messages"][0].update(attached=[7]), "message 1 names file 7, which it does not list"),
        (lambda r: r["messages"][0]["answers"].clear(), "message 1 has no answer"),
        (lambda r: r.update(in_use=["x"]), "in_use names file 'x'"),
    ],
)
def test_a_record_this_demo_did_not_write_is_refused_by_what_is_wrong(spoil, message: str) -> None:
    exchanges, in_use = _chat()
    record = copy.deepcopy(record_of(exchanges, in_use, {}))
    spoil(record)
    with pytest.raises(BadInput, match=message):
        from_record(record)


def test_an_answer_still_streaming_when_the_record_was_written_is_left_out() -> None:
    exchanges, in_use = _chat()
    exchanges.append(Exchange("Streaming?"))
    back, _, _ = from_record(record_of(exchanges, in_use, {}))
    assert [e.question for e in back] == ["What is it?", "And now?"]
