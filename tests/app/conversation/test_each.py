"""An answer per input (each.py): each row token-identical to the same question asked with that file
alone, the last to the answer from all of them; all decoded together; Stop ends them all."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from pandagpt_demo.app.conversation.chatlog import Attachment
from pandagpt_demo.app.conversation.each import SUM, answer_blend, answer_each
from pandagpt_demo.app.conversation.session import ChatSession
from pandagpt_demo.config import SamplingParams, ServingConfig
from pandagpt_demo.errors import BadInput
from pandagpt_demo.model.modalities import Modality
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.serving.start import start_engine
from tests.conftest import REPO_ROOT
from tests.media import write_image
from tests.serving.test_limits import Fault
from tests.waiting import wait_until

T = TypeVar("T")
TOKENS = 12
GREEDY = SamplingParams(max_new_tokens=TOKENS, temperature=0.0)


def files(tmp_path: Path) -> list[Attachment]:
    write_image(tmp_path / "red.png", seed=3)
    return [
        Attachment.of(REPO_ROOT / "examples" / "sunset.jpg", Modality.IMAGE),
        Attachment.of(tmp_path / "red.png", Modality.IMAGE, weight=0.5),
        Attachment.of(REPO_ROOT / "examples" / "dog_bark.wav", Modality.AUDIO),
        # -1: with the tiny random model, weights such as -0.3 leave the sum's 12 greedy tokens equal to
        # sunset.jpg's alone, and a row that equals another cannot show which file it was made from.
        Attachment.of(REPO_ROOT / "examples" / "thermal_person.png", Modality.THERMAL, weight=-1.0),
    ]


def last(stream: Iterator[T]) -> T:
    """The last item of a stream, read to its end."""
    return deque(stream, maxlen=1)[0]


def test_each_row_is_the_answer_with_that_file_alone_and_all_are_decoded_together(tiny_model: PandaGPT, tmp_path: Path) -> None:
    engine = start_engine(tiny_model, ServingConfig(max_batch=8))
    try:
        attached = files(tmp_path)
        session = ChatSession()
        together = last(session.ask(tiny_model, engine, "What is this?", GREEDY, attached=attached))
        active: list[int] = []
        with Fault(tiny_model, lambda rows, length: active.append(engine.stats().active)):
            rows = last(answer_each(session, tiny_model, engine, TOKENS))
        assert [row.label for row in rows] == ["sunset.jpg (image)", "red.png (image)", "dog_bark.wav (audio)", "thermal_person.png (thermal)", SUM]
        assert all(row.done and row.error is None for row in rows)
        for attachment, row in zip(attached, rows):
            alone = Attachment.of(attachment.path, attachment.kind)  # weight 1: the file alone, as /chat takes it
            assert row.text == last(ChatSession().ask(tiny_model, engine, "What is this?", GREEDY, attached=[alone])), row.label
        assert rows[-1].text == together
        texts = [row.text for row in rows]
        assert len(set(texts)) == len(texts), f"every row is an answer of its own, so a swapped row or an ignored vector shows: {texts}"
        assert max(active) == 5, f"the five answers were not decoded together: {sorted(set(active))}"
        assert [e.question for e in session.exchanges] == ["What is this?"] and session.exchanges[0].answer.text == together.strip()
    finally:
        engine.close()


def test_stop_ends_every_row_and_bad_requests_change_nothing(tiny_model: PandaGPT, tmp_path: Path) -> None:
    engine = start_engine(tiny_model, ServingConfig(max_batch=8))
    try:
        session = ChatSession()
        with pytest.raises(BadInput, match="Ask a question first"):
            next(answer_each(session, tiny_model, engine, TOKENS))
        last(session.ask(tiny_model, engine, "Hello?", GREEDY))
        with pytest.raises(BadInput, match="No files are in use"):
            next(answer_each(session, tiny_model, engine, TOKENS))
        session.in_use.extend(files(tmp_path)[:2])
        stop = threading.Event()
        rows = []
        for rows in answer_each(session, tiny_model, engine, 500, stop):
            if any(row.text for row in rows):
                stop.set()
        assert all(row.done for row in rows) and max(len(row.text) for row in rows) < 200
        wait_until(lambda: engine.stats().active == 0, what="the cancelled rows leaving")  # at the engine's next step
    finally:
        engine.close()


def test_a_blend_runs_from_one_file_to_the_other_decoded_together(tiny_model: PandaGPT, tmp_path: Path) -> None:
    engine = start_engine(tiny_model, ServingConfig(max_batch=8))
    try:
        session = ChatSession()
        last(session.ask(tiny_model, engine, "What is this?", GREEDY, attached=files(tmp_path)[:3]))
        each = last(answer_each(session, tiny_model, engine, TOKENS))
        active: list[int] = []
        with Fault(tiny_model, lambda rows, length: active.append(engine.stats().active)):
            blend = last(answer_blend(session, tiny_model, engine, TOKENS, pair=(0, 2)))
        assert [row.label for row in blend] == [f"{w:g}·sunset.jpg + {1 - w:g}·dog_bark.wav" for w in (0, 0.25, 0.5, 0.75, 1)]
        assert blend[0].text == each[2].text and blend[-1].text == each[0].text, "a blend's ends are the files alone, B then A"
        assert each[0].text != each[2].text, "A's answer and B's differ, so ends in the wrong order would show"
        half = [Attachment.of(a.path, a.kind, weight=0.5) for a in (files(tmp_path)[0], files(tmp_path)[2])]
        assert blend[2].text == last(ChatSession().ask(tiny_model, engine, "What is this?", GREEDY, attached=half))
        assert len({row.text for row in blend}) > 2, f"the steps between the ends answer from their own mix: {[row.text for row in blend]}"
        assert max(active) == 5
        for pair, steps, message in [
            ((0, 0), 5, "two different files"),
            ((0, 3), 5, "numbers 1 to 3"),
            ((0, 1), 1, "2 to 9 steps"),
            ((0, 1), 20, "2 to 9 steps"),
        ]:
            with pytest.raises(BadInput, match=message):
                answer_blend(session, tiny_model, engine, TOKENS, pair=pair, steps=steps)
        session.in_use[1:] = []
        with pytest.raises(BadInput, match="Blend needs two files in use"):
            answer_blend(session, tiny_model, engine, TOKENS)
    finally:
        engine.close()
