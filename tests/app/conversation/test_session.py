"""One user's chat without Gradio: exchanges, files in use and their weights, answer versions,
edits, interrupted answers, undo, context notices, and resuming from a record."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from pandagpt_demo.app.conversation.chatlog import Attachment
from pandagpt_demo.app.conversation.session import ChatSession
from pandagpt_demo.config import ModelConfig, SamplingParams, ServingConfig
from pandagpt_demo.errors import BadInput, TimedOut
from pandagpt_demo.model.modalities import MediaError, Modality
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.serving.batching import QueueFull
from pandagpt_demo.serving.engine import Engine
from pandagpt_demo.serving.inline import InlineEngine
from pandagpt_demo.serving.start import start_engine
from tests.media import write_image, write_thermal
from tests.serving.test_limits import Fault, slow_steps

GREEDY = SamplingParams(max_new_tokens=10, temperature=0.0)


def last(stream: Iterator[str]) -> str:
    return list(stream)[-1]


class Recording:
    """An engine that keeps the prompt embeddings of every request, then lets `inner` answer."""

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.prompts: list[torch.Tensor] = []

    def generate(self, embeds: torch.Tensor, params: SamplingParams, cancel=None) -> Iterator[int]:
        self.prompts.append(embeds.detach().clone())
        return self.inner.generate(embeds, params, cancel)


def image(tmp_path: Path, name: str, seed: int) -> Path:
    path = tmp_path / name
    write_image(path, seed=seed)
    return path


def test_turns_regenerate_keeps_versions_undo_and_interrupted_answers(tiny_model: PandaGPT, tiny_engine: Engine, tmp_path: Path) -> None:
    photo = Attachment.of(image(tmp_path, "photo.png", 1), Modality.IMAGE)
    session = ChatSession()
    first = last(session.ask(tiny_model, tiny_engine, "What is this?", GREEDY, attached=[photo]))
    assert session.exchanges[0].answer.text == first and session.in_use == [photo]
    assert last(session.regenerate(tiny_model, tiny_engine, GREEDY)) == first  # greedy: the same answer, as a second version
    assert session.versions() == (2, 2)
    session.page(-1)
    assert session.versions() == (1, 2)

    stream = session.ask(tiny_model, tiny_engine, "And then?", SamplingParams(max_new_tokens=50, temperature=0.0))
    shown = next(stream)
    stream.close()  # Stop: what was shown becomes the answer at the next action
    assert session.messages()[-1] == {"role": "assistant", "content": [shown, "*Used: photo.png (image ×1)*"]}
    assert session.undo() == ("And then?", [])
    assert [m["role"] for m in session.messages()] == ["user", "assistant"]
    assert session.undo() == ("What is this?", [photo]) and session.in_use == [], "undo takes the message's files back with it"

    with pytest.raises(MediaError):
        session.ask(tiny_model, tiny_engine, "Bad", GREEDY, attached=[Attachment("missing.wav", Modality.AUDIO, "0" * 64, tmp_path / "missing.wav")])
    assert session.exchanges == [] and session.in_use == [], "a bad file leaves the chat as it was"
    last(session.ask(tiny_model, tiny_engine, "Again?", GREEDY, attached=[photo]))
    last(session.ask(tiny_model, tiny_engine, "The same photo again?", GREEDY, attached=[Attachment.of(photo.path, Modality.IMAGE)]))
    assert session.in_use == [photo] and session.exchanges[-1].answer.caption() == "photo.png (image ×1)", "the same file is not counted twice"
    session.clear()
    assert session.messages() == [] and session.in_use == [] and len(session.cache) == 0


def test_two_images_reach_the_model_as_their_weighted_sum(tiny_model: PandaGPT, tiny_engine: Engine, tmp_path: Path) -> None:
    """The files in use are summed with their own weights: the vector in the prompt is a·v1 + b·v2;
    removing one leaves the other alone, and each answer records what it was given."""
    first = Attachment.of(image(tmp_path, "one.png", 1), Modality.IMAGE, weight=0.7)
    second = Attachment.of(image(tmp_path, "two.png", 2), Modality.IMAGE, weight=-0.4)
    engine = Recording(tiny_engine)
    session = ChatSession()
    last(session.ask(tiny_model, engine, "Both?", GREEDY, attached=[first, second]))
    v1, v2 = (tiny_model.project(tiny_model.embed_file(Modality.IMAGE, attached.path)) for attached in (first, second))
    before, _ = tiny_model.prompt_ids(session.conversation(upto=session.exchanges[0]), with_vector=True)
    torch.testing.assert_close(engine.prompts[-1][0, len(before)], (0.7 * v1 - 0.4 * v2).to(engine.prompts[-1].dtype))
    assert session.exchanges[0].answer.caption() == "one.png (image ×0.7) + two.png (image ×-0.4)"

    session.remove(second)
    first.weight = 1.0
    last(session.regenerate(tiny_model, engine, GREEDY))
    torch.testing.assert_close(engine.prompts[-1][0, len(before)], v1.to(engine.prompts[-1].dtype))
    assert [v.caption() for v in session.exchanges[0].versions] == ["one.png (image ×0.7) + two.png (image ×-0.4)", "one.png (image ×1)"]
    assert [a.name for a in session.exchanges[0].attached] == ["one.png", "two.png"], "a removed file stays shown with its message"


def test_one_image_in_a_message_is_the_vector_of_that_image(tiny_model: PandaGPT, tiny_engine: Engine, tmp_path: Path) -> None:
    """The same vector reaches the model as when one image was given in its own input."""
    photo = image(tmp_path, "photo.png", 3)
    engine = Recording(tiny_engine)
    session = ChatSession()
    answer = last(session.ask(tiny_model, engine, "What is this?", GREEDY, attached=[Attachment.of(photo, Modality.IMAGE)]))
    conversation = session.conversation(upto=session.exchanges[0])
    expected = tiny_model.prompt_embeds(conversation, tiny_model.fuse([tiny_model.embed_file(Modality.IMAGE, photo)]))
    torch.testing.assert_close(engine.prompts[-1], expected)
    assert (
        answer
        == "".join(tiny_model.stream(conversation, tiny_model.fuse([tiny_model.embed_file(Modality.IMAGE, photo)]), GREEDY, tiny_engine)).strip()
    )


def test_an_edited_question_is_answered_again_and_later_exchanges_go(tiny_model: PandaGPT, tiny_engine: Engine, tmp_path: Path) -> None:
    photo = Attachment.of(image(tmp_path, "photo.png", 1), Modality.IMAGE)
    heat = tmp_path / "heat.png"
    write_thermal(heat)
    thermal = Attachment.of(heat, Modality.THERMAL)
    session = ChatSession()
    last(session.ask(tiny_model, tiny_engine, "What is this?", GREEDY, attached=[photo]))
    last(session.ask(tiny_model, tiny_engine, "And the heat?", GREEDY, attached=[thermal]))
    assert session.in_use == [photo, thermal]
    edited = last(session.edit(tiny_model, tiny_engine, 0, "What colour is it?", GREEDY))
    assert [e.question for e in session.exchanges] == ["What colour is it?"]
    assert session.in_use == [photo], "the files of the exchanges that went are no longer in use"
    alone = ChatSession()
    assert last(alone.ask(tiny_model, tiny_engine, "What colour is it?", GREEDY, attached=[photo])) == edited
    with pytest.raises(BadInput, match="no question 5"):
        session.edit(tiny_model, tiny_engine, 4, "?", GREEDY)
    assert session.owner_of(0) == 0 and session.owner_of(1) == 0
    with pytest.raises(BadInput):
        session.owner_of(2)


def test_long_conversation_is_trimmed_with_a_notice(tiny_config: ModelConfig) -> None:
    model = PandaGPT.load(tiny_config.updated(context_length=60))
    session = ChatSession.from_history([(f"Question {i} about it?", f"Answer {i}.") for i in range(6)])
    notices: list[str] = []
    list(session.ask(model, start_engine(model, ServingConfig.inline()), "Now?", GREEDY, notices.append))
    assert any("left out" in notice for notice in notices)
    assert len(session.exchanges) == 7, "the session keeps every turn; only the model sees fewer"


def test_a_new_request_in_the_same_session_stops_the_running_answer(tiny_model: PandaGPT, tiny_engine: Engine) -> None:
    """Two requests of one session (a double click, two API calls) never write into one answer."""
    session = ChatSession()
    long = SamplingParams(max_new_tokens=40, temperature=0.0)
    first = session.ask(tiny_model, tiny_engine, "First?", long)
    shown = next(first)
    second = last(session.ask(tiny_model, tiny_engine, "Second?", GREEDY))
    assert list(first) == [], "the replaced stream stops at its next piece"
    assert [(e.question, e.answer.text) for e in session.exchanges] == [("First?", shown.strip()), ("Second?", second)]
    alone = ChatSession.from_history([("First?", shown.strip())])
    assert last(alone.ask(tiny_model, tiny_engine, "Second?", GREEDY)) == second, "nothing of the first leaked in"

    third = session.ask(tiny_model, tiny_engine, "Third?", long)
    next(third)
    assert session.undo() == ("Third?", [])
    assert list(third) == [] and len(session.exchanges) == 2, "Undo stops the answer it removes"


def test_a_failed_answer_takes_the_turn_back(tiny_config: ModelConfig, tmp_path: Path) -> None:
    """A refused request (here a queue that accepts nothing) leaves the chat as it was: a new
    question is withdrawn with its files, and a regenerated answer adds no version."""
    model = PandaGPT.load(tiny_config)
    session = ChatSession.from_history([("What is this?", "A sunset.")])
    engine = start_engine(model, ServingConfig(max_batch=1, max_waiting=0))
    try:
        with pytest.raises(QueueFull):
            list(session.regenerate(model, engine, GREEDY))
        assert session.messages() == [{"role": "user", "content": "What is this?"}, {"role": "assistant", "content": "A sunset."}]
        with pytest.raises(QueueFull):
            list(session.ask(model, engine, "And now?", GREEDY, attached=[Attachment.of(image(tmp_path, "p.png", 1), Modality.IMAGE)]))
        assert len(session.exchanges) == 1 and session.in_use == [] and not session.waiting
    finally:
        engine.close()


def test_an_answer_cut_short_keeps_the_text_shown(tiny_model: PandaGPT) -> None:
    """A timeout (or GPU memory, or a restart) after some text: that text stays as the answer, and the
    chat goes on; cut before any text, the question is taken back like any failed answer."""
    engine = InlineEngine(tiny_model.llm, tiny_model.tokenizer.eos_token_id, stall_timeout=None, answer_timeout=0.4)
    session = ChatSession()
    shown: list[str] = []
    with Fault(tiny_model, slow_steps(0.03)), pytest.raises(TimedOut):
        for text in session.ask(tiny_model, engine, "Tell me a long story.", SamplingParams(max_new_tokens=200, temperature=0.0)):
            shown.append(text)
    assert shown, "some text arrived before the limit"
    assert session.messages() == [{"role": "user", "content": "Tell me a long story."}, {"role": "assistant", "content": shown[-1].strip()}]
    assert not session.waiting
    with Fault(tiny_model, slow_steps(0.5)), pytest.raises(TimedOut):
        list(session.ask(tiny_model, engine, "And then?", GREEDY))
    assert len(session.exchanges) == 1, "nothing shown: the question is withdrawn"


def test_a_record_resumes_the_chat_and_a_missing_file_is_asked_for_by_name(tiny_model: PandaGPT, tiny_engine: Engine, tmp_path: Path) -> None:
    photo = Attachment.of(image(tmp_path, "photo.png", 1), Modality.IMAGE, weight=0.5)
    session = ChatSession()
    first = last(session.ask(tiny_model, tiny_engine, "What is this?", GREEDY, attached=[photo]))
    last(session.regenerate(tiny_model, tiny_engine, SamplingParams(max_new_tokens=6, temperature=1.0, top_p=0.9)))
    record = session.record({"max_new_tokens": 10})

    kept = ChatSession.from_record(record, {photo.sha256: photo.path}.get)
    assert kept.messages() == session.messages() and kept.versions() == session.versions()
    assert [(a.name, a.kind, a.weight, a.path) for a in kept.in_use] == [("photo.png", Modality.IMAGE, 0.5, photo.path)]
    assert kept.exchanges[0].attached[0] is kept.in_use[0], "one file, attached once and in use, is one attachment"
    kept.page(-1)
    assert kept.exchanges[0].answer.text == first

    lost = ChatSession.from_record(record, lambda sha256: None)
    assert [a.name for a in lost.missing()] == ["photo.png"]
    with pytest.raises(MediaError, match="'photo.png': it is no longer on the server; please attach it again"):
        lost.ask(tiny_model, tiny_engine, "More?", GREEDY)
    copy = tmp_path / "renamed.png"
    copy.write_bytes(photo.path.read_bytes())
    assert lost.supply(Attachment.of(copy, Modality.IMAGE)), "matched by content, whatever its name"
    assert lost.missing() == [] and lost.in_use[0].path == copy and lost.in_use[0].weight == 0.5
    assert last(lost.ask(tiny_model, tiny_engine, "More?", GREEDY))


def test_imagebinds_view_reads_the_vectors_the_answers_use(tiny_model: PandaGPT, tiny_engine: Engine, tmp_path: Path) -> None:
    """ImageBind's vectors of the files in use come from the answers' cache: a file an answer used
    is not encoded again, and one the view encoded first is not encoded again by the next answer."""
    first = Attachment.of(image(tmp_path, "one.png", 1), Modality.IMAGE)
    second = Attachment.of(image(tmp_path, "two.png", 2), Modality.IMAGE, weight=0.5)
    session = ChatSession()
    last(session.ask(tiny_model, tiny_engine, "One?", GREEDY, attached=[first]))
    assert session.cache.encodes == 1
    [(attachment, vector)] = session.vectors_in_use(tiny_model)
    assert attachment is first and session.cache.encodes == 1
    torch.testing.assert_close(vector, tiny_model.embed_file(Modality.IMAGE, first.path))
    session.in_use.append(second)
    vectors = session.vectors_in_use(tiny_model)
    assert [a for a, _ in vectors] == [first, second] and session.cache.encodes == 2
    last(session.ask(tiny_model, tiny_engine, "Both?", GREEDY))
    assert session.cache.encodes == 2
    session.in_use[0].path = None
    with pytest.raises(MediaError, match="no longer on the server"):
        session.vectors_in_use(tiny_model)
