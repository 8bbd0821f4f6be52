"""ZeroGPU: the model loads where `spaces` lets it, and each answer is one GPU call that only computes:
it asks for the seconds its request needs, gets and gives back plain data (no GPU tensor), and stops
before its time is up with the text so far kept; sessions, their caches and every count stay here.

The launched tests run the real app with SPACES_ZERO_GPU set and `tests/zerogpu_stand_in/spaces.py`
in place of Hugging Face's package (which needs their ZeroGPU service); the stand-in keeps the real
package's rules (its docstring lists them), and the first test below observes each of them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from pandagpt_demo.app.space.zerogpu import estimate_seconds
from pandagpt_demo.config import ZeroGpuConfig
from pandagpt_demo.model.modalities import Modality
from tests.app.api.test_openai_api import MODEL, metric
from tests.app.test_app import AUDIO, IMAGE, send_args, texts
from tests.app.test_public_link import wait_for
from tests.conftest import REPO_ROOT
from tests.launched import App
from tests.media import write_image

STAND_IN = REPO_ROOT / "tests" / "zerogpu_stand_in"


def test_the_duration_grows_with_the_answer_and_the_files_to_encode_within_the_limits() -> None:
    config = ZeroGpuConfig()
    tokens_only = estimate_seconds(config, 1000, [])
    assert tokens_only == round(config.margin_s + 1000 * config.token_s)
    with_files = estimate_seconds(config, 1000, [Modality.IMAGE, Modality.VIDEO])
    encode = dict(config.encode_s)
    assert with_files - tokens_only == pytest.approx(encode["image"] + encode["video"], abs=1)
    assert estimate_seconds(config, 1, []) == config.min_s  # a short answer still pays for the call's start
    assert estimate_seconds(config, 100_000, [Modality.VIDEO] * 20) == config.max_s  # never past the cap
    assert estimate_seconds(ZeroGpuConfig(max_s=300), 100_000, []) == 300


def records(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def calls(log: Path) -> list[dict]:
    """The stand-in's record of each GPU call (its other line is the launch's)."""
    return [record for record in records(log) if "task" in record]


def zero_gpu_app(start: Callable[..., App], tmp_path: Path, *flags: str, slow_step: float | None = None, move_s: float = 0) -> tuple[App, Path]:
    """The app on the stand-in; `move_s`: how long a new worker takes to move the weights to the GPU."""
    log = tmp_path / f"gpu-calls-{len(list(tmp_path.glob('gpu-calls-*')))}.jsonl"
    env = {"SPACES_ZERO_GPU": "true", "SPACES_STAND_IN_LOG": str(log), "SPACES_STAND_IN_MOVE_S": str(move_s)}
    return start(*flags, slow_step=slow_step, env=env, python_path=(STAND_IN,)), log


def shared_fds(pid: int) -> int:
    """The file descriptors of process `pid` on torch's shared memory."""
    found = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            found += "torch_" in os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:  # closed while listed
            pass
    return found


def ended(pid: int) -> bool:
    """Whether process `pid` (a child of the app) has died: a zombie until the app reaps it, or gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_the_stand_in_keeps_the_real_packages_rules(tmp_path: Path) -> None:
    move_s = 0.5
    run = subprocess.run(
        [sys.executable, str(STAND_IN / "rules.py")],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "SPACES_STAND_IN_LOG": str(tmp_path / "calls.jsonl"), "SPACES_STAND_IN_MOVE_S": str(move_s)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.splitlines()[-1])
    made_calls = calls(tmp_path / "calls.jsonl")
    assert seen["importing thread"] == "cuda:0" and "CUDA init" in seen["other thread"], "CUDA only on the importing thread"
    [(pid, made, device, started)], [(again, made_again, _, started_again)] = seen["first call"], seen["second call"]
    assert pid == again != seen["main pid"] and device == "cuda:0", "calls run in one forked worker, where CUDA works"
    assert started - made_calls[0]["granted"] >= move_s > started_again - made_calls[1]["granted"], (
        "a new worker moves the weights in the granted time"
    )
    shared = seen["shared"]
    assert shared == {"kept": True, "given there": [True], "given here": True, "fds": 2, "fds after": 0}, (
        "tensors cross through shared memory, an fd each"
    )
    assert [call["token"] for call in made_calls[-2:]] == ["visitor's token", None], "scheduled with the request of the context advancing the call"
    assert (made, made_again, seen["calls in main"]) == (1, 2, 0), "what a call changes stays in its worker"
    assert seen["gpu tensor"]["raised"] == "RuntimeError" and "CUDA init" in seen["gpu tensor"]["message"], "a GPU tensor cannot come back"
    assert seen["host tensor"] == [[2.0, 2.0, 2.0]]
    assert seen["mixed"]["message"] == "'RuntimeError'", "a GPU and a host tensor in one operation raise, as on CUDA"
    assert seen["secret"] == {"got": [], "raised": "Error", "message": "'ValueError'"}, "an error comes back as its class name alone"
    assert seen["too long"] == {"got": ["started"], "raised": "Error", "message": "'GPU task aborted'"}
    assert [call["ended"] for call in made_calls[:7]][-1] == "aborted"  # "too long", the seventh call


def test_on_zero_gpu_the_model_loads_and_answers_while_sessions_caches_holds_and_counts_stay_here(start: Callable[..., App], tmp_path: Path) -> None:
    app, log = zero_gpu_app(start, tmp_path, "--max-sessions", "1", "--upload-grace", "2")
    config = ZeroGpuConfig()
    [launch] = [record for record in records(log) if "launched" in record]
    assert launch["decorated"], "a GPU function is decorated before launch: only then does `spaces` report the start to ZeroGPU"
    assert "Model tiny on cuda (float16)" in app.log.read_text(), "the model was placed on ZeroGPU's cuda, as a Space would"
    log.write_text("")  # the readiness probe's call is not this test's
    counted = ['pandagpt_requests_total{endpoint="page"}', 'pandagpt_requests_total{endpoint="chat"}', "pandagpt_generated_tokens_total"]
    counted += ['pandagpt_encode_seconds_count{modality="image"}', 'pandagpt_encode_seconds_count{modality="audio"}']
    counted += ['pandagpt_errors_total{endpoint="page",kind="unavailable"}']
    before = {name: metric(app, name) for name in counted}
    client = Client(app.url, verbose=False)
    answer = client.predict("What is this?", image=handle_file(IMAGE), audio=handle_file(AUDIO), max_new_tokens=900, api_name="/chat")
    client.predict(*send_args("And this?", IMAGE, max_new_tokens=300, temperature=0.0), api_name="/send")
    time.sleep(3.5)  # past the upload grace: the photo stays only because this session holds it, here
    chat, _, _ = client.predict(*send_args("Again?", max_new_tokens=300, temperature=0.0), api_name="/send")  # the photo's vector is cached here
    refused, _, box = Client(app.url, verbose=False).predict(*send_args("May I?", max_new_tokens=4), api_name="/send")
    after = {name: metric(app, name) for name in counted}
    v1 = httpx.post(app.url + "v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}, timeout=30)
    assert v1.status_code == 503 and "not available on a ZeroGPU Space" in v1.text

    assert answer.strip() and [role for role, _ in texts(chat)] == ["user", "assistant"] * 2 and texts(chat)[-1][1].strip()
    assert refused == [] and box == {"text": "May I?", "files": []}, "the cap on sessions is kept here: the newcomer is refused"
    chat_call, send_call, again_call = calls(log)
    assert [call["ended"] for call in (chat_call, send_call, again_call)] == ["completed"] * 3 and chat_call["task"] == "answer_model1"
    assert chat_call["worker"] != app.process.pid and "batched-decoder" not in chat_call["threads"]
    assert chat_call["duration"] == estimate_seconds(config, 900, [Modality.IMAGE, Modality.AUDIO])
    assert send_call["duration"] == estimate_seconds(config, 300, [Modality.IMAGE]) > again_call["duration"] == estimate_seconds(config, 300, [])
    gained = {name: after[name] - before[name] for name in counted}
    assert gained[counted[0]] == 3 and gained[counted[1]] == 1 and gained[counted[2]] >= 3, "requests and tokens are counted here"
    assert gained[counted[3]] == 2 and gained[counted[4]] == 1, "each file encoded once per session, counted here"
    assert gained[counted[5]] == 1 and metric(app, "pandagpt_sessions") == 1 and metric(app, "pandagpt_answers_in_flight") == 0


def test_an_answer_stops_before_its_gpu_time_is_up_keeps_its_text_and_is_in_flight_here_meanwhile_then_the_app_drains(
    start: Callable[..., App], tmp_path: Path
) -> None:
    """The time is counted from the grant: a new worker's moving the weights (2.5 s here) is in it."""
    app, log = zero_gpu_app(start, tmp_path, "--zerogpu-max-s", "4", "--zerogpu-margin-s", "1", slow_step=0.05, move_s=2.5)
    [probe] = calls(log)
    os.kill(probe["worker"], signal.SIGKILL)  # the GPU went elsewhere: the next call gets a new worker
    wait_for(lambda: ended(probe["worker"]), timeout=10)
    log.write_text("")
    client = Client(app.url, verbose=False)
    job = client.submit(*send_args("Tell me a long story.", IMAGE, max_new_tokens=1000), api_name="/send")
    wait_for(lambda: metric(app, "pandagpt_answers_in_flight") == 1, timeout=10)
    chat, _, _ = job.result()
    assert metric(app, "pandagpt_answers_in_flight") == 0, "the drain's count is kept here"
    [call] = calls(log)
    assert call["worker"] != probe["worker"] and call["duration"] == 4
    assert call["ended"] == "completed", "not aborted by ZeroGPU: it stopped itself, its deadline counted from the grant"
    assert 4 - 1 - 0.5 < call["elapsed"] < 4, "it stopped at its deadline, not by reaching its end"
    (_, question), (role, answer) = texts(chat)[-2:]
    assert question == "Tell me a long story." and role == "assistant" and answer.strip()  # the text so far is kept as the answer
    app.process.send_signal(signal.SIGTERM)  # the main thread, which runs the model loads here, still stops on a signal
    assert app.process.wait(timeout=30) == 0


def test_a_task_zerogpu_aborts_is_told_in_its_own_words_not_as_our_fault(start: Callable[..., App], tmp_path: Path) -> None:
    """With no margin, a step that runs past the grant (1.5 s steps, 4 s granted) is cut by ZeroGPU
    itself, whose `spaces` raises Gradio's Error "GPU task aborted": the visitor reads those words,
    /metrics counts a `zerogpu` failure, and no internal fault is logged."""
    app, log = zero_gpu_app(start, tmp_path, "--zerogpu-max-s", "4", "--zerogpu-margin-s", "0", slow_step=1.5)
    with pytest.raises(AppError, match="GPU task aborted"):
        Client(app.url, verbose=False).predict(*send_args("Tell me a long story.", IMAGE, max_new_tokens=1000), api_name="/send")
    assert calls(log)[-1]["ended"] == "aborted"
    assert metric(app, 'pandagpt_errors_total{endpoint="page",kind="zerogpu"}') == 1
    assert "Internal error" not in app.log.read_text()


def test_on_zero_gpu_imagebinds_view_and_an_answer_table_are_one_gpu_call_each(start: Callable[..., App], tmp_path: Path) -> None:
    """The view equals the one a plain app computes with the same dtype (float16 on the CPU, as the
    stand-in's "cuda" is); each row of /answer_each equals /chat's greedy answer with those files,
    and the whole table, every row decoded together, is one GPU call asking for the seconds it needs.
    (A margin of 20 s lifts the short answers' asks above the 20 s floor, where rows can show.)"""
    config = ZeroGpuConfig(margin_s=20)
    app, log = zero_gpu_app(start, tmp_path, "--zerogpu-margin-s", str(config.margin_s))
    plain = start("--dtype", "float16")
    files = {"image": handle_file(IMAGE), "audio": handle_file(AUDIO)}
    labels = "a sunset, a dog barking, rain"
    visitor = {"X-IP-Token": "the visitor's token"}  # what ZeroGPU schedules a call on (spaces' client.py)
    log.write_text("")

    view = json.loads(Client(app.url, verbose=False, headers=visitor).predict(**files, labels=labels, api_name="/imagebind_view"))
    expected = json.loads(Client(plain.url, verbose=False).predict(**files, labels=labels, api_name="/imagebind_view"))
    assert view["files"] == expected["files"] and view["labels"] == ["a sunset", "a dog barking", "rain"]
    for table in ("similarity", "probabilities"):
        assert sum(view[table], []) == pytest.approx(sum(expected[table], []), abs=1e-6), table
    [look] = calls(log)
    assert look["ended"] == "completed" and look["duration"] == estimate_seconds(config, 0, [Modality.IMAGE, Modality.AUDIO])

    log.write_text("")
    tokens = 12
    job = Client(app.url, verbose=False, headers=visitor).submit("What is this?", **files, max_new_tokens=tokens, api_name="/answer_each")
    rows = json.loads(job.result())
    [table] = calls(log)
    assert [look["token"], table["token"]] == ["the visitor's token"] * 2, "each call on the visitor's quota, the table's too"
    assert table["duration"] > estimate_seconds(config, tokens, [Modality.IMAGE, Modality.AUDIO]), "more than one answer's seconds"
    assert table["ended"] == "completed" and table["duration"] == estimate_seconds(config, tokens, [Modality.IMAGE, Modality.AUDIO], rows=3)
    assert [row["label"] for row in rows] == ["sunset.jpg (image)", "dog_bark.wav (audio)", "all, weighted"]
    assert all(row["done"] and row["error"] is None and row["text"].strip() for row in rows)

    def chat(**given: object) -> str:
        return Client(app.url, verbose=False).predict("What is this?", **given, max_new_tokens=tokens, temperature=0.0, api_name="/chat").strip()

    assert [row["text"].strip() for row in rows] == [chat(image=files["image"]), chat(audio=files["audio"]), chat(**files)]


def test_vectors_a_session_keeps_hold_no_shared_memory(start: Callable[..., App], tmp_path: Path) -> None:
    """A call's results (and arguments) pass through ForkingPickler, where a tensor becomes shared
    memory holding a file descriptor for as long as it lives: the session's cached vectors cross as
    bytes instead, so the app holds no descriptor for them, however many it keeps."""
    app, log = zero_gpu_app(start, tmp_path)
    images = [tmp_path / f"image-{seed}.png" for seed in range(8)]
    for seed, path in enumerate(images):
        write_image(path, size=(64, 48), seed=seed)
    client = Client(app.url, verbose=False)
    log.write_text("")
    client.predict(*send_args("What are these?", *images, max_new_tokens=2), api_name="/send")
    encoded = shared_fds(app.process.pid)
    client.predict(*send_args("And now?", max_new_tokens=2), api_name="/send")  # the eight vectors cached here go into the call
    assert [call["ended"] for call in calls(log)] == ["completed"] * 2
    assert (encoded, shared_fds(app.process.pid)) == (0, 0), "no descriptor held for the 8 vectors kept"
