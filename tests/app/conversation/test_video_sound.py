"""A video's own sound as an input of its own (tiny model, in process): off by default and then the
answer is exactly the frames' answer; heard, the prompt's vector is frames + sound, and the sound's
vector is that of the same track saved as a WAV file. Also what an answer's "Used:" line and a
chat's record keep of it, and the table of what ImageBind took in."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from pandagpt_demo.app.answering import intakes as intakes_module
from pandagpt_demo.app.answering.intakes import Intakes
from pandagpt_demo.app.conversation.chatlog import Attachment, Exchange, Used, Version, from_record, record_of
from pandagpt_demo.app.conversation.session import ChatSession
from pandagpt_demo.errors import BadInput
from pandagpt_demo.model.conversation import Conversation
from pandagpt_demo.model.modalities import MediaError, Modality
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.serving.engine import Engine
from tests.app.conversation.test_session import GREEDY, Recording, last
from tests.media import write_video, write_video_with_sound


@pytest.fixture(scope="module")
def talk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("talk") / "talk.mp4"
    write_video_with_sound(path, seconds=6)
    return path


def test_the_sound_is_off_by_default_and_the_answer_is_the_frames_alone(tiny_model: PandaGPT, tiny_engine: Engine, talk: Path) -> None:
    video = Attachment.of(talk, Modality.VIDEO)
    session = ChatSession()
    answer = last(session.ask(tiny_model, tiny_engine, "What happens?", GREEDY, attached=[video]))
    conversation = Conversation()
    conversation.ask("What happens?")
    frames = tiny_model.fuse([tiny_model.embed_file(Modality.VIDEO, talk)])
    assert answer == "".join(tiny_model.stream(conversation, frames, GREEDY, tiny_engine)).strip(), "token for token the frames' answer"
    assert [a.kind for a in session.in_use] == [Modality.VIDEO]


def test_a_heard_video_adds_its_sound_right_after_it_once(tiny_model: PandaGPT, tiny_engine: Engine, talk: Path) -> None:
    video = Attachment.of(talk, Modality.VIDEO)
    session = ChatSession(pending=[video])
    track = session.hear(video)
    assert session.hear(video) is track and session.pending == [video, track], "one sound track, right after its video"
    assert (track.kind, track.sha256, track.path, track.sound_of_video, track.name) == (
        Modality.AUDIO,
        video.sha256,
        talk,
        True,
        "talk.mp4 (its sound)",
    )
    engine = Recording(tiny_engine)
    last(session.ask(tiny_model, engine, "What do you see and hear?", GREEDY, attached=list(session.pending)))
    frames, sound = (tiny_model.project(tiny_model.embed_file(kind, talk)) for kind in (Modality.VIDEO, Modality.AUDIO))
    before, _ = tiny_model.prompt_ids(session.conversation(upto=session.exchanges[0]), with_vector=True)
    torch.testing.assert_close(engine.prompts[-1][0, len(before)], (frames + sound).to(engine.prompts[-1].dtype))
    session.remove(track)
    assert session.in_use == [video], "its sound is removable like any file"
    with pytest.raises(BadInput, match="not among the files"):
        session.hear(Attachment.of(talk, Modality.VIDEO))


def test_the_sounds_vector_equals_the_same_track_saved_as_wav(tiny_model: PandaGPT, talk: Path, tmp_path: Path) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.skip("FFmpeg's command-line tool is not installed (apt-get install ffmpeg)")
    wav = tmp_path / "track.wav"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(talk), "-vn", "-c:a", "pcm_f32le", str(wav)], check=True)
    heard = tiny_model.embed_file(Modality.AUDIO, Attachment.of(talk, Modality.VIDEO).sound_track().path)
    torch.testing.assert_close(heard, tiny_model.embed_file(Modality.AUDIO, wav), atol=1e-5, rtol=0)


def test_a_silent_video_has_no_sound_to_add(tmp_path: Path) -> None:
    write_video(tmp_path / "silent.mp4", seconds=1)
    with pytest.raises(MediaError, match="no sound track"):
        Attachment.of(tmp_path / "silent.mp4", Modality.VIDEO).sound_track()


def test_the_record_keeps_the_sound_and_what_was_taken_in(talk: Path) -> None:
    video = Attachment.of(talk, Modality.VIDEO)
    track = video.sound_track(weight=0.5)
    Intakes().of(track)
    assert track.took_in == "4.7 s of 6 s heard", "clips from 0, 1.33 and 2.67 s: 0 to 4.67 s of a 6 s track"
    exchange = Exchange("Q?", [video, track], [Version("A.", (Used.of(video), Used.of(track)))])
    assert exchange.answer.caption() == f"talk.mp4 (video ×1) + talk.mp4 (its sound) (audio ×0.5; {track.took_in})"
    exchanges, in_use, _ = from_record(record_of([exchange], [video, track], {}))
    assert [a.sound_of_video for a in in_use] == [False, True] and in_use[1].weight == 0.5
    assert exchanges[0].answer.caption() == exchange.answer.caption(), "the figure is kept with the answer"


def test_intakes_are_found_once_per_content_and_kind_and_keep_no_pixels(talk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Modality] = []
    took_in = intakes_module.took_in

    def counted(kind: Modality, path: Path) -> object:
        calls.append(kind)
        return took_in(kind, path)

    monkeypatch.setattr(intakes_module, "took_in", counted)
    table = Intakes(kept=2)
    video = Attachment.of(talk, Modality.VIDEO)
    drawn = []
    first = table.of(video, drawn.append)
    assert drawn[0].material is not None and first.material is None, "the frames go to the drawing, not the table"
    assert table.of(Attachment.of(talk, Modality.VIDEO)) == first and calls == [Modality.VIDEO]
    table.of(video.sound_track())
    assert calls == [Modality.VIDEO, Modality.AUDIO], "another kind of the same file is found apart"
    table.of(Attachment.of(talk, Modality.AUDIO))  # the same content and kind as the sound track: kept
    assert len(calls) == 2 and video.took_in == first.short
