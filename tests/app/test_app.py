"""The launched app driven through gradio_client, as an API user or a second browser tab would."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.conftest import REPO_ROOT, _free_port, _wait_until_ready

IMAGE = str(REPO_ROOT / "examples" / "sunset.jpg")
AUDIO = str(REPO_ROOT / "examples" / "dog_bark.wav")
SAMPLED = dict(max_new_tokens=16, top_p=0.9, temperature=1.0)
GREEDY = dict(max_new_tokens=12, top_p=0.01, temperature=0.0)


def send_args(question: str, image: str | None = None, audio: str | None = None, **sampling: float) -> list:
    """Positional inputs of the UI's /send endpoint: question, six files, six weights, three sliders."""
    files = [handle_file(image) if image else None, handle_file(audio) if audio else None, None, None, None, None]
    settings = {**SAMPLED, **sampling}
    return [question, *files, *[1.0] * 6, settings["max_new_tokens"], settings["top_p"], settings["temperature"]]


def regenerate_args(image: str | None = None, audio: str | None = None, **sampling: float) -> list:
    return send_args("", image, audio, **sampling)[1:]


def texts(chat: list[dict]) -> list[tuple[str, str]]:
    """(role, text) of each message of a Chatbot value."""
    result = []
    for message in chat:
        content = message["content"]
        text = content if isinstance(content, str) else "".join(part.get("text", "") for part in content)
        result.append((message["role"], text))
    return result


def test_image_and_audio_question_streams_then_regenerate_undo_clear(app_url: str) -> None:
    client = Client(app_url, verbose=False)
    job = client.submit(*send_args("What do you see and hear?", IMAGE, AUDIO, **GREEDY), api_name="/send")
    updates = list(job)
    assert len(updates) > 2, "the answer arrives in several pieces"
    chat, _ = updates[-1]
    assert updates[0][1] == "", "the first piece empties the textbox"
    assert all(update[1] == {"__type__": "update"} for update in updates[1:]), "then it is left alone for typing"
    (role_q, question), (role_a, answer) = texts(chat)
    assert (role_q, question) == ("user", "What do you see and hear?")
    assert role_a == "assistant" and answer and "###" not in answer
    partial = [texts(update[0])[-1][1] for update in updates[:-1] if len(update[0]) == 2]
    assert partial and all(answer.startswith(p) for p in partial), "each update extends the previous one"

    regenerated = client.predict(*regenerate_args(IMAGE, AUDIO, **GREEDY), api_name="/regenerate")
    assert texts(regenerated) == [("user", question), ("assistant", answer)], "greedy regeneration repeats the answer"
    text_only = client.predict(*regenerate_args(**GREEDY), api_name="/regenerate")
    assert texts(text_only)[-1][1] != answer, "without the files the vector (and the answer) changes"

    chat, textbox = client.predict(api_name="/undo")
    assert chat == [] and textbox == question, "undo gives the question back for editing"

    client.predict(*send_args("Second try", IMAGE), api_name="/send")
    chat, textbox, *files = client.predict(api_name="/clear")
    assert chat == [] and textbox == "" and files == [None] * 6


def test_bad_file_leaves_chat_and_question_and_chat_goes_on(app_url: str, tmp_path: Path) -> None:
    """The page shows a warning naming the file (test_browser checks it); nothing given is lost."""
    client = Client(app_url, verbose=False)
    before, _ = client.predict(*send_args("First question", IMAGE), api_name="/send")
    bad = tmp_path / "notes.wav"
    bad.write_text("this is a text file, not a recording")
    chat, textbox = client.predict(*send_args("What is this sound?", audio=str(bad)), api_name="/send")
    assert chat == before and textbox == "What is this sound?"
    chat, _ = client.predict(*send_args("Still there?", IMAGE), api_name="/send")
    assert [text for role, text in texts(chat) if role == "user"] == ["First question", "Still there?"]


def test_empty_question_does_nothing(app_url: str) -> None:
    client = Client(app_url, verbose=False)
    chat, textbox = client.predict(*send_args("   "), api_name="/send")
    assert chat == [] and textbox == ""


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
        (dict(weights={"audio": 7.0}), "audio weight must be a number from -2 to 2"),
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
        client.predict(*send_args("Listen", audio=str(big)), api_name="/send")
    chat, _ = client.predict(*send_args("Still fine?"), api_name="/send")
    assert texts(chat)[0] == ("user", "Still fine?")


def test_on_a_zero_gpu_space_answers_are_decoded_inside_spaces_gpu(tiny_config, tmp_path: Path) -> None:
    """With SPACES_ZERO_GPU set the GPU exists only inside `spaces.GPU` calls: every handler runs
    under it and no batching thread decodes outside a request. `spaces` here is a stand-in that
    records each call (the real one needs Hugging Face's ZeroGPU service)."""
    calls = tmp_path / "gpu_calls.log"
    (tmp_path / "spaces.py").write_text(
        "import functools, threading\n"
        "def GPU(fn):\n"
        "    @functools.wraps(fn)\n"
        "    def wrapper(*args, **kwargs):\n"
        "        result = yield from fn(*args, **kwargs)\n"
        f"        with open({str(calls)!r}, 'a') as log:\n"
        "            log.write(' '.join([fn.__name__, *(t.name for t in threading.enumerate())]) + '\\n')\n"
        "        return result\n"
        "    return wrapper\n"
    )
    port = _free_port()
    env = {**os.environ, "SPACES_ZERO_GPU": "true", "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    command = [sys.executable, "app.py", "--model", "tiny", "--checkpoints", str(tiny_config.imagebind_path.parent.parent), "--port", str(port)]
    log_path = tmp_path / "app.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_until_ready(url, process, log_path)
        calls.write_text("")
        answer = Client(url, verbose=False).predict("What is this?", image=handle_file(IMAGE), max_new_tokens=8, api_name="/chat")
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert answer.strip()
    [call] = calls.read_text().splitlines()
    handler, *threads = call.split()
    assert handler == "chat_api"
    assert "batched-decoder" not in threads, "a decoding thread runs outside spaces.GPU"


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
    checkpoints = str(tiny_config.imagebind_path.parent.parent)
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
        assert client.predict("And now a real question?", max_new_tokens=4, api_name="/chat").strip(), "the next request works"
        chat, _ = client.predict(*send_args("A real question", **GREEDY), api_name="/send")
        assert texts(chat)[0] == ("user", "A real question") and len(chat) == 2
    finally:
        process.terminate()
        process.wait(timeout=30)
    logged = log_path.read_text()
    assert f"ERROR pandagpt_demo.app.ui: internal error {ref.group(1)}" in logged
    assert "Traceback (most recent call last)" in logged and "RuntimeError: simulated internal fault" in logged
