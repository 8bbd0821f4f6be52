"""The launched app driven through gradio_client, as an API user or a second browser tab would."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import openai
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from pandagpt_demo.app.answering.settings import AnswerSettings
from tests.conftest import REPO_ROOT, _free_port, _wait_until_ready
from tests.media import distinct_image

IMAGE = str(REPO_ROOT / "examples" / "sunset.jpg")
AUDIO = str(REPO_ROOT / "examples" / "dog_bark.wav")
SAMPLED = dict(max_new_tokens=16, top_p=0.9, temperature=1.0)
GREEDY = dict(max_new_tokens=12, top_p=0.01, temperature=0.0)


def message(question: str, *files: str) -> dict:
    """The message box's value as an API client sends it: a question and any number of files."""
    return {"text": question, "files": [handle_file(f) for f in files]}


def send_args(question: str, *files: str, **sampling: float) -> list:
    """Positional inputs of the page's /send endpoint: the message, then the three sliders."""
    settings = {**SAMPLED, **sampling}
    return [message(question, *files), settings["max_new_tokens"], settings["top_p"], settings["temperature"]]


def sliders(**sampling: float) -> list:
    settings = {**SAMPLED, **sampling}
    return [settings["max_new_tokens"], settings["top_p"], settings["temperature"]]


def texts(chat: list[dict]) -> list[tuple[str, str]]:
    """(role, text) of each message of a Chatbot value: its first text (an answer's caption, which
    names the files it used, comes after)."""
    return [(m["role"], m["content"] if isinstance(m["content"], str) else next(p["text"] for p in m["content"] if "text" in p)) for m in chat]


def captions(chat: list[dict]) -> list[str]:
    """The "Used: ..." caption under each answer that was given files."""
    return [p["text"] for m in chat if m["role"] == "assistant" and not isinstance(m["content"], str) for p in m["content"][1:] if "text" in p]


def shown_files(chat: list[dict]) -> list[list[str]]:
    """The alt text (file name, and kind where a preview stands for it) of the files shown with each question."""
    return [
        [p.get("alt_text") for p in m["content"] if "file" in p] if not isinstance(m["content"], str) else [] for m in chat if m["role"] == "user"
    ]


def file_names(files: list) -> list[str]:
    """The names of a message box's files as gradio_client hands them back (local copies)."""
    return [Path(f if isinstance(f, str) else f["path"]).name for f in files]


def test_image_and_audio_question_streams_then_regenerate_undo_clear(app_url: str) -> None:
    client = Client(app_url, verbose=False)
    job = client.submit(*send_args("What do you see and hear?", IMAGE, AUDIO, **GREEDY), api_name="/send")
    updates = list(job)
    assert len(updates) > 2, "the answer arrives in several pieces"
    chat, _, _ = updates[-1]
    assert updates[0][2] == {"text": "", "files": []}, "the first piece empties the message box"
    assert all(update[2] == {"__type__": "update"} for update in updates[1:]), "then it is left alone for typing"
    (role_q, question), (role_a, answer) = texts(chat)
    assert (role_q, question) == ("user", "What do you see and hear?")
    assert shown_files(chat) == [["sunset.jpg", "dog_bark.wav"]], "the question shows its files"
    assert captions(chat) == ["*Used: sunset.jpg (image ×1; centre 67% seen) + dog_bark.wav (audio ×1; 2.7 s of 3 s heard)*"], (
        "with what ImageBind took in"
    )
    assert role_a == "assistant" and answer and "###" not in answer
    partial = [texts(update[0])[-1][1] for update in updates[:-1] if len(update[0]) == 2]
    assert partial and all(answer.startswith(p) for p in partial), "each update extends the previous one"

    regenerated, versions, _ = client.predict(*sliders(**GREEDY), api_name="/regenerate")
    assert texts(regenerated) == [("user", question), ("assistant", answer)], "greedy regeneration repeats the answer (the files stay in use)"
    assert versions == "Answer version 2 of 2", "the earlier version is kept"

    chat, _, box = client.predict(api_name="/undo")
    assert chat == [] and box["text"] == question, "undo gives the question back for editing"
    assert file_names(box["files"]) == ["sunset.jpg", "dog_bark.wav"], "and its files"

    client.predict(*send_args("Second try", IMAGE), api_name="/send")
    chat, versions, box = client.predict(api_name="/clear")
    assert chat == [] and versions == "" and box == {"text": "", "files": []}


def test_an_image_in_the_message_reaches_the_model_as_the_chat_api_image_does(app_url: str) -> None:
    """The same vector reaches the model: a greedy answer for an image attached in the message
    equals /chat's answer for it given as `image` (the contract the Image tab had)."""
    client = Client(app_url, verbose=False)
    chat, _, _ = client.predict(*send_args("Describe this image.", IMAGE, **GREEDY), api_name="/send")
    direct = Client(app_url, verbose=False).predict("Describe this image.", image=handle_file(IMAGE), api_name="/chat", **GREEDY)
    assert texts(chat)[1][1] == direct.strip()


def test_bad_file_leaves_chat_and_question_and_chat_goes_on(app_url: str, tmp_path: Path) -> None:
    """The page shows a warning naming the file (test_browser checks it); nothing given is lost."""
    client = Client(app_url, verbose=False)
    before, _, _ = client.predict(*send_args("First question", IMAGE), api_name="/send")
    bad = tmp_path / "notes.wav"
    bad.write_text("this is a text file, not a recording")
    chat, _, box = client.predict(*send_args("What is this sound?", str(bad)), api_name="/send")
    assert chat == before and box["text"] == "What is this sound?"
    assert file_names(box["files"]) == ["notes.wav"], "the file goes back into the box with its question"
    chat, _, _ = client.predict(*send_args("Still there?"), api_name="/send")
    assert [text for role, text in texts(chat) if role == "user"] == ["First question", "Still there?"]
    assert captions(chat)[-1] == "*Used: sunset.jpg (image ×1; centre 67% seen)*", "the refused file is not in use; the first one still is"


def test_a_chat_takes_at_most_max_files_files(app_url: str, tmp_path: Path) -> None:
    """Every file of a chat stays on disk while it lives: past AnswerSettings.max_files (16) a message is
    refused, naming the first file left out, and the chat goes on with what it had."""
    limit = AnswerSettings.max_files
    images = [distinct_image(tmp_path / f"photo{i}.png", i, size=8) for i in range(limit + 1)]
    client = Client(app_url, verbose=False)
    chat, _, _ = client.predict(*send_args("Many at once", *map(str, images[:limit]), max_new_tokens=2), api_name="/send")
    assert len(shown_files(chat)[0]) == limit
    chat, _, box = client.predict(*send_args("One more", str(images[limit]), max_new_tokens=2), api_name="/send")
    assert len(chat) == 2, "refused: nothing was asked"
    assert box == {"__type__": "update"}, "the message box is left as it was, question and file"
    chat, _, _ = client.predict(*send_args("And without it?", max_new_tokens=2), api_name="/send")
    assert len(chat) == 4 and captions(chat)[-1].count("image ×1") == limit


def test_empty_question_does_nothing(app_url: str) -> None:
    client = Client(app_url, verbose=False)
    chat, _, box = client.predict(*send_args("   "), api_name="/send")
    assert chat == [] and box == {"__type__": "update"}


def test_two_clients_see_only_their_own_history(app_url: str) -> None:
    results: dict[str, list] = {}

    def converse(name: str) -> None:
        client = Client(app_url, verbose=False)
        client.predict(*send_args(f"I am {name}", IMAGE), api_name="/send")
        results[name] = client.predict(*send_args(f"{name} again"), api_name="/send")[0]

    threads = [threading.Thread(target=converse, args=(name,)) for name in ("alice", "bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    for name in ("alice", "bob"):
        users = [text for role, text in texts(results[name]) if role == "user"]
        assert users == [f"I am {name}", f"{name} again"]


def test_chat_api_sums_several_files_of_a_kind_with_their_weights(app_url: str) -> None:
    """`/chat` takes a list of files per modality and a list of weights; greedy answers show the
    weights reach the model (a weight of 0 for the second image is the first image alone)."""
    client = Client(app_url, verbose=False)
    apple = str(REPO_ROOT / "examples" / "red_apple.png")
    alone = client.predict("What is this?", image=handle_file(IMAGE), api_name="/chat", **GREEDY)
    zeroed = client.predict(
        "What is this?", image=[handle_file(IMAGE), handle_file(apple)], weights={"image": [1.0, 0.0]}, api_name="/chat", **GREEDY
    )
    # The tiny model's random encoder points most images the same way, so the sum with a negative weight shows best.
    against = client.predict(
        "What is this?", image=[handle_file(IMAGE), handle_file(apple)], weights={"image": [1.0, -2.0]}, api_name="/chat", **GREEDY
    )
    assert zeroed == alone and against != alone
    with pytest.raises(AppError, match=r"weights\['image'\] has 1 numbers for 2 image file\(s\)"):
        client.predict("What?", image=[handle_file(IMAGE), handle_file(apple)], weights={"image": [1.0]}, api_name="/chat")


def test_chat_api_streams_text_with_history(app_url: str, tmp_path: Path) -> None:
    client = Client(app_url, verbose=False)
    job = client.submit(
        "What happens next?",
        image=handle_file(IMAGE),
        audio=handle_file(AUDIO),
        weights={"audio": 0.5},
        history=[["What is this?", "A sunset over the sea."]],
        api_name="/chat",
        **SAMPLED,
    )
    pieces = list(job)
    assert len(pieces) > 1 and all(isinstance(p, str) for p in pieces)
    assert pieces[-1] == job.outputs()[-1] and "###" not in pieces[-1]
    wrong_type = tmp_path / "photo.png"
    wrong_type.write_bytes(Path(AUDIO).read_bytes())
    with pytest.raises(AppError, match="image file 'photo.png'"):
        client.predict("Look", image=handle_file(str(wrong_type)), api_name="/chat")


@pytest.mark.parametrize(
    ("request_kwargs", "message"),
    [
        (dict(question="   "), "question must be a non-empty string"),
        (dict(history=[{"role": "user", "content": "Hi"}]), r"history must be a list of \[question, answer\] pairs"),
        (dict(weights=[1.0]), "weights must map modality names"),
        (dict(weights={"smell": 1.0}), "weights must map modality names"),
        (dict(audio=handle_file(AUDIO), weights={"audio": 7.0}), "weight of the audio file must be a number from -2 to 2"),
        (dict(max_new_tokens=0), "max_new_tokens must be a number from 1 to 1024"),
        (dict(top_p=1.5), "top_p must be a number from 0 to 1"),
        (dict(temperature=-1.0), "temperature must be a number from 0 to 2"),
        (dict(image=5), "image input must be a file"),
    ],
)
def test_chat_api_refuses_malformed_requests_with_a_clear_message(app_url: str, request_kwargs: dict, message: str) -> None:
    request = {"question": "What is it?", **request_kwargs}
    with pytest.raises(AppError, match=message):
        Client(app_url, verbose=False).predict(api_name="/chat", **request)


def test_chat_api_reads_only_uploaded_files(app_url: str, tmp_path: Path) -> None:
    """A path on the server given as a plain string is refused: only uploads (and the examples) are read."""
    secret = tmp_path / "private.jpg"
    secret.write_bytes(Path(IMAGE).read_bytes())
    client = Client(app_url, verbose=False)
    with pytest.raises(AppError, match="image file 'private.jpg': it is a path on the server, not an uploaded file"):
        client.predict("What is it?", image=str(secret), api_name="/chat")
    assert client.predict("What is it?", image=handle_file(str(secret)), max_new_tokens=3, api_name="/chat")


def test_concurrent_videos_get_their_own_embeddings(app_url: str, tmp_path: Path) -> None:
    """Greedy answers about two videos are the same whether asked alone or at the same moment."""
    from tests.media import write_video

    other = tmp_path / "gradient.mp4"
    write_video(other, seconds=3)
    videos = [str(REPO_ROOT / "examples" / "bouncing_ball.mp4"), str(other)]

    def ask(video: str) -> str:
        return Client(app_url, verbose=False).predict("What happens?", video=handle_file(video), api_name="/chat", **GREEDY)

    alone = [ask(video) for video in videos]  # the tiny model may answer both alike: test_model checks the vectors
    together: dict[int, str] = {}
    threads = [threading.Thread(target=lambda i=i: together.__setitem__(i, ask(videos[i % 2]))) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert [together[i] for i in range(4)] == [alone[0], alone[1], alone[0], alone[1]]


def test_files_over_the_size_limit_are_refused(app_url: str, tmp_path: Path) -> None:
    """The app runs with --max-file-mb 5: a larger upload is refused before the app reads it."""
    big = tmp_path / "huge.wav"
    big.write_bytes(b"\0" * (6 * 1024 * 1024))
    client = Client(app_url, verbose=False)
    with pytest.raises(Exception, match="(?i)too large|exceed|size|413"):
        client.predict(*send_args("Listen", str(big)), api_name="/send")
    chat, _, _ = client.predict(*send_args("Still fine?"), api_name="/send")
    assert texts(chat)[0] == ("user", "Still fine?")


FAULTY_LAUNCH = """
import runpy, sys
from pandagpt_demo.model.pandagpt import PandaGPT

original = PandaGPT.prompt_embeds


def prompt_embeds(self, conversation, vector):
    if "FAULT" in conversation.turns[-1].question:
        raise RuntimeError("simulated internal fault")
    return original(self, conversation, vector)


PandaGPT.prompt_embeds = prompt_embeds  # a bug inside the model path, reached only by the magic question
sys.argv = ["app.py", *sys.argv[1:]]
runpy.run_path("app.py", run_name="__main__")
"""


def test_an_internal_fault_is_logged_with_its_traceback_and_never_blamed_on_the_user(tiny_config, tmp_path: Path) -> None:
    launcher = tmp_path / "faulty_app.py"
    launcher.write_text(FAULTY_LAUNCH)
    port = _free_port()
    checkpoints = str(tiny_config.files.imagebind_path.parent.parent)
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    log_path = tmp_path / "app.log"
    with open(log_path, "w") as log:
        command = [sys.executable, str(launcher), "--model", "tiny", "--checkpoints", checkpoints, "--port", str(port)]
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_until_ready(url, process, log_path)
        client = Client(url, verbose=False)
        with pytest.raises(AppError) as caught:
            client.predict("FAULT, please", max_new_tokens=4, api_name="/chat")
        message = str(caught.value)
        ref = re.search(r"Internal error \(logged as ([0-9a-f]{8})\)", message)
        assert ref and "not a problem with your files or settings" in message
        with pytest.raises(AppError, match=r"Internal error \(logged as [0-9a-f]{8}\)"):  # the page's Send too
            client.predict(*send_args("FAULT again", **GREEDY), api_name="/send")
        with pytest.raises(openai.InternalServerError, match=r"Internal error \(logged as [0-9a-f]{8}\)") as v1:  # and /v1, as a 500
            v1_client = openai.OpenAI(base_url=url + "v1", api_key="none", max_retries=0)
            v1_client.chat.completions.create(model="pandagpt-tiny", messages=[{"role": "user", "content": "FAULT via v1"}], max_tokens=4)
        assert v1.value.status_code == 500
        assert client.predict("And now a real question?", max_new_tokens=4, api_name="/chat").strip(), "the next request works"
        chat, _, _ = client.predict(*send_args("A real question", **GREEDY), api_name="/send")
        assert texts(chat)[0] == ("user", "A real question") and len(chat) == 2
    finally:
        process.terminate()
        process.wait(timeout=30)
    logged = log_path.read_text()
    assert f"ERROR pandagpt_demo.errors: internal error {ref.group(1)}" in logged
    assert "Traceback (most recent call last)" in logged and "RuntimeError: simulated internal fault" in logged
    faults = len(re.findall(r"ERROR pandagpt_demo.errors: internal error [0-9a-f]{8}", logged))
    assert faults == 3 and logged.count("RuntimeError: simulated internal fault") == faults, "each fault's traceback is logged once"


def test_the_start_log_holds_no_warning_and_no_traceback(start) -> None:
    """A start as a user sees it in the terminal: no Python warning (Gradio 6 asks for `css` in
    `launch()`, peft asks transformers for a renamed property), and no traceback for the questions
    asked while the model was still loading (a user error is a message, not a fault)."""
    app = start()
    logged = app.log.read_text()
    warnings = re.findall(r"^.*\b\w*Warning: .*$", logged, flags=re.MULTILINE)
    assert not warnings, f"the start printed warnings: {warnings}"
    assert "Traceback" not in logged, logged


def test_a_refusal_is_one_log_line_naming_who_and_why_and_is_counted_by_kind(start, tmp_path: Path) -> None:
    """An operator reads the log for faults: a user's mistake is one line (endpoint, who, kind,
    what they were told), never a traceback; /metrics counts it by kind."""
    from tests.app.api.test_openai_api import metric

    app = start()
    before = app.log.read_text()
    client = Client(app.url, verbose=False)
    with pytest.raises(AppError):
        client.predict("   ", max_new_tokens=4, api_name="/chat")
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("this is not audio")
    client.predict(*send_args("What is this?", str(not_audio)), api_name="/send")  # the page warns; the chat stays
    client.predict(*send_args("Too hot?", temperature=99), api_name="/send")  # checked by the handler, not Gradio
    v1 = openai.OpenAI(base_url=app.url + "v1", api_key="none", max_retries=0)
    with pytest.raises(openai.BadRequestError):
        v1.chat.completions.create(model="pandagpt-tiny", messages=[{"role": "user", "content": "Hi"}], temperature=99)
    with pytest.raises(openai.NotFoundError):
        v1.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "Hi"}])
    logged = app.log.read_text()[len(before) :]
    refused = re.findall(r"INFO pandagpt_demo\.app\.answering\.core: refused (\w+) request of (\S+) \((\w+)\): (.*)", logged)
    assert [(endpoint, kind) for endpoint, _, kind, _ in refused] == [
        ("chat", "bad_setting"),
        ("page", "bad_input"),
        ("page", "bad_setting"),
        ("openai", "bad_setting"),
        ("openai", "model_not_found"),
    ], logged
    assert all(who.startswith(("api-", "openai-")) or len(who) > 6 for _, who, _, _ in refused)
    assert (
        "non-empty" in refused[0][3]
        and "notes.wav" in refused[1][3]
        and "temperature must be a number from 0 to 2, not 99" in refused[2][3]
        and "gpt-4" in refused[4][3]
    )
    assert "Traceback" not in logged and "ERROR" not in logged, logged
    assert metric(app, 'pandagpt_errors_total{endpoint="page",kind="bad_input"}') == 1
    assert metric(app, 'pandagpt_errors_total{endpoint="openai",kind="model_not_found"}') == 1
