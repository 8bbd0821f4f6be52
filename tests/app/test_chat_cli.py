"""The terminal chat: streams an answer, keeps a multi-turn prompt, survives a bad file."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from pandagpt_demo.config import ModelConfig
from pandagpt_demo.model.intake import took_in
from pandagpt_demo.model.modalities import Modality
from tests.conftest import REPO_ROOT
from tests.media import write_video_with_sound


def run_chat(config: ModelConfig, *args: str, stdin: str) -> subprocess.CompletedProcess:
    checkpoints = config.files.imagebind_path.parent.parent
    command = [sys.executable, "-m", "pandagpt_demo.chat", "--model", "tiny", "--checkpoints", str(checkpoints), "--max-new-tokens", "8", *args]
    return subprocess.run(command, cwd=REPO_ROOT, input=stdin, capture_output=True, text=True, timeout=300)


def test_terminal_chat_answers_two_turns(tiny_config: ModelConfig) -> None:
    result = run_chat(
        tiny_config,
        "--image",
        "examples/sunset.jpg",
        "--audio",
        "examples/rain.wav",
        "--weight",
        "audio=0.5",
        "Describe this",
        stdin="And the sound?\n\n",
    )
    assert result.returncode == 0, result.stderr
    answers = re.findall(r"panda> (.*)", result.stdout)  # the "you> " prompt shares the line when piped
    assert len(answers) == 2 and all(answer.strip() for answer in answers)
    assert "Tiny random weights" in result.stderr


def test_terminal_chat_reports_a_bad_file(tiny_config: ModelConfig, tmp_path) -> None:
    bad = tmp_path / "clip.mp4"
    bad.write_text("not a video")
    result = run_chat(tiny_config, "--video", str(bad), "What happens?", stdin="")
    assert result.returncode == 0
    assert "Could not use the video file 'clip.mp4'" in result.stderr


def test_app_help_lists_every_flag() -> None:
    result = subprocess.run([sys.executable, "app.py", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for flag in ("--checkpoints", "--model", "--device", "--dtype", "--host", "--port", "--share", "--concurrency", "--max-file-mb"):
        assert flag in result.stdout


def test_terminal_chat_shows_imagebinds_view(tiny_config: ModelConfig) -> None:
    """`/labels a, b`: the files' cosine similarities and their probabilities over the labels;
    a label too long for the text tower is refused, and the chat goes on."""
    long = "a dog " * 40
    result = run_chat(
        tiny_config, "--image", "examples/sunset.jpg", "--audio", "examples/rain.wav", stdin=f"/labels a sunset, rain\n/labels {long}\nWhat now?\n\n"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if "cosine similarity" in line)
    assert "sunset.jpg (image)" in lines[header] and "rain.wav (audio)" in lines[header]
    (self_1, cross_1), (cross_2, self_2) = (lines[header + row].split()[-2:] for row in (1, 2))
    assert self_1 == self_2 == "1.000" and cross_1 == cross_2
    labels = next(i for i, line in enumerate(lines) if line.lstrip("you> ").startswith("P(label)"))
    assert lines[labels].split()[-2:] == ["sunset", "rain"]
    for row in lines[labels + 1 : labels + 3]:
        assert abs(sum(float(value) for value in row.split()[-2:]) - 1) < 2e-3
    assert "longer than ImageBind's text tower reads" in result.stderr
    assert re.findall(r"panda> (.*)", result.stdout), "the chat goes on after a refused label"


FILES = {"image": "examples/sunset.jpg", "audio": "examples/dog_bark.wav"}


def test_terminal_chat_answers_each_file_alone_and_together(tiny_config: ModelConfig) -> None:
    """`/each`: one greedy answer per file alone and one with the sum; with greedy settings the sum's
    row is the chat's own answer, and a file's row is the answer of a chat with that file alone.
    `/blend`: five rows from the second file alone to the first alone. (dog_bark.wav, not rain.wav: with
    the tiny random model, sunset.jpg plus rain.wav answers as sunset.jpg alone, so the sum's row could
    not show it was made from both.)"""
    both = run_chat(
        tiny_config,
        "--temperature",
        "0",
        "--image",
        "examples/sunset.jpg",
        "--audio",
        "examples/dog_bark.wav",
        "What is it?",
        stdin="/each\n/blend\n/blend 1 1\n\n",
    )
    alone = {kind: run_chat(tiny_config, "--temperature", "0", f"--{kind}", path, "What is it?", stdin="") for kind, path in FILES.items()}
    assert both.returncode == 0 and all(run.returncode == 0 for run in alone.values()), both.stderr + "".join(r.stderr for r in alone.values())
    answer = re.findall(r"panda> (.*)", both.stdout)[0].strip()
    rows = dict(re.findall(r"\[([^\]]+)\] (.*)", both.stdout))
    blend = [
        "0·sunset.jpg + 1·dog_bark.wav",
        "0.25·sunset.jpg + 0.75·dog_bark.wav",
        "0.5·sunset.jpg + 0.5·dog_bark.wav",
        "0.75·sunset.jpg + 0.25·dog_bark.wav",
    ]
    assert list(rows) == ["sunset.jpg (image)", "dog_bark.wav (audio)", "all, weighted", *blend, "1·sunset.jpg + 0·dog_bark.wav"]
    assert rows[blend[0]] == rows["dog_bark.wav (audio)"] and rows["1·sunset.jpg + 0·dog_bark.wav"] == rows["sunset.jpg (image)"]
    assert "Blend two different files" in both.stderr
    assert rows["all, weighted"].strip() == answer
    for kind, path in FILES.items():  # row i is file i's: the answer of a chat with that file alone
        assert rows[f"{Path(path).name} ({kind})"].strip() == re.findall(r"panda> (.*)", alone[kind].stdout)[0].strip(), kind
    ends = [rows["sunset.jpg (image)"], rows["dog_bark.wav (audio)"], rows["all, weighted"]]
    assert len(set(ends)) == 3, f"each file's row and the sum's differ, so swapped rows or blend ends would show: {ends}"


def test_terminal_chat_says_what_imagebind_takes_in_and_hears_a_video_when_asked(tiny_config: ModelConfig, tmp_path: Path) -> None:
    talk = tmp_path / "talk.mp4"
    write_video_with_sound(talk, seconds=6)
    heard = run_chat(tiny_config, "--temperature", "0", "--video", str(talk), "--video-sound", "What is it?", stdin="/each\n\n")
    assert heard.returncode == 0, heard.stderr
    assert f"[talk.mp4: {took_in(Modality.VIDEO, talk).summary}]" in heard.stderr
    assert f"[talk.mp4 (its sound): {took_in(Modality.AUDIO, talk).summary}]" in heard.stderr
    rows = dict(re.findall(r"\[([^\]]+)\] (.*)", heard.stdout))
    assert list(rows) == ["talk.mp4 (video)", "talk.mp4 (its sound) (audio)", "all, weighted"], "its sound is a row of its own"
    seen = run_chat(tiny_config, "--temperature", "0", "--video", str(talk), "What is it?", stdin="")
    assert re.findall(r"panda> (.*)", seen.stdout)[0].strip() == rows["talk.mp4 (video)"].strip(), "without the flag: the frames alone"
