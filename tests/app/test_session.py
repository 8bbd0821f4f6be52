"""One user's chat without Gradio: turns, interrupted answers, regenerate, undo, context notices."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pandagpt_demo.app.session import ChatSession, Inputs
from pandagpt_demo.config import ModelConfig, SamplingParams, ServingConfig
from pandagpt_demo.model.modalities import MediaError, Modality
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.serving.batching import QueueFull
from pandagpt_demo.serving.engine import Engine
from pandagpt_demo.serving.start import start_engine
from tests.media import write_image

GREEDY = SamplingParams(max_new_tokens=10, temperature=0.0)


def test_turns_regenerate_undo_and_interrupted_answers(tiny_model: PandaGPT, tiny_engine: Engine, tmp_path: Path) -> None:
    image = tmp_path / "photo.png"
    write_image(image)
    inputs = Inputs.of({Modality.IMAGE: image})
    session = ChatSession()
    first = list(session.ask(tiny_model, tiny_engine, "What is this?", inputs, GREEDY))[-1]
    assert session.conversation.turns[0].answer == first
    assert list(session.regenerate(tiny_model, tiny_engine, inputs, GREEDY))[-1] == first  # greedy: the same answer

    stream = session.ask(tiny_model, tiny_engine, "And then?", inputs, SamplingParams(max_new_tokens=50, temperature=0.0))
    shown = next(stream)
    stream.close()  # Stop: what was shown becomes the answer at the next action
    messages = session.messages()
    assert messages[-1] == {"role": "assistant", "content": shown}
    assert session.undo() == "And then?"
    assert [m["role"] for m in session.messages()] == ["user", "assistant"]

    with pytest.raises(MediaError):
        session.ask(tiny_model, tiny_engine, "Bad", Inputs.of({Modality.AUDIO: tmp_path / "missing.wav"}), GREEDY)
    assert len(session.conversation.turns) == 1, "a bad file leaves the conversation as it was"
    session.clear()
    assert session.messages() == [] and len(session.cache) == 0


def test_long_conversation_is_trimmed_with_a_notice(tiny_config: ModelConfig) -> None:
    model = PandaGPT.load(dataclasses.replace(tiny_config, context_length=60))
    session = ChatSession.from_history([(f"Question {i} about it?", f"Answer {i}.") for i in range(6)])
    notices: list[str] = []
    list(session.ask(model, start_engine(model, ServingConfig.inline()), "Now?", Inputs(), GREEDY, notices.append))
    assert any("left out" in notice for notice in notices)
    assert len(session.conversation.turns) == 7, "the session keeps every turn; only the model sees fewer"


def test_a_new_request_in_the_same_session_stops_the_running_answer(tiny_model: PandaGPT, tiny_engine: Engine) -> None:
    """Two requests of one session (a double click, two API calls) never write into one answer."""
    session = ChatSession()
    long = SamplingParams(max_new_tokens=40, temperature=0.0)
    first = session.ask(tiny_model, tiny_engine, "First?", Inputs(), long)
    shown = next(first)
    second = list(session.ask(tiny_model, tiny_engine, "Second?", Inputs(), GREEDY))[-1]
    assert list(first) == [], "the replaced stream stops at its next piece"
    assert [(t.question, t.answer) for t in session.conversation.turns] == [("First?", shown.strip()), ("Second?", second)]
    alone = ChatSession.from_history([("First?", shown.strip())])
    assert list(alone.ask(tiny_model, tiny_engine, "Second?", Inputs(), GREEDY))[-1] == second, "nothing of the first leaked in"

    third = session.ask(tiny_model, tiny_engine, "Third?", Inputs(), long)
    next(third)
    assert session.undo() == "Third?"
    assert list(third) == [] and len(session.conversation.turns) == 2, "Undo stops the answer it removes"


def test_a_failed_answer_takes_the_turn_back(tiny_config: ModelConfig) -> None:
    """A refused request (here a queue that accepts nothing) leaves the conversation as it was:
    a new question is withdrawn, and a regenerated answer is restored."""
    model = PandaGPT.load(tiny_config)
    session = ChatSession.from_history([("What is this?", "A sunset.")])
    engine = start_engine(model, ServingConfig(max_batch=1, max_waiting=0))
    try:
        with pytest.raises(QueueFull):
            list(session.regenerate(model, engine, Inputs(), GREEDY))
        assert session.messages() == [{"role": "user", "content": "What is this?"}, {"role": "assistant", "content": "A sunset."}]
        with pytest.raises(QueueFull):
            list(session.ask(model, engine, "And now?", Inputs(), GREEDY))
        assert len(session.conversation.turns) == 1 and not session.conversation.waiting
    finally:
        engine.close()
