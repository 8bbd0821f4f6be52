"""Model replicas on a real (local) Ray Serve cluster behind the launched app, on CPU with the tiny
model: concurrent clients, answers equal to the single-process path, a replica killed mid-answer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from gradio_client import Client, handle_file

from pandagpt_demo.app.conversation.chatlog import Attachment
from pandagpt_demo.app.conversation.session import ChatSession
from pandagpt_demo.config import ModelConfig, SamplingParams
from pandagpt_demo.model.modalities import Modality
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.serving.engine import Engine
from tests.conftest import REPO_ROOT
from tests.launched import App
from tests.waiting import wait_until

pytest.importorskip("ray.serve", reason="replicas need ray[serve] (requirements-test.txt)")

GREEDY = dict(temperature=0.0, top_p=0.01)
IMAGE, AUDIO = REPO_ROOT / "examples" / "sunset.jpg", REPO_ROOT / "examples" / "dog_bark.wav"


def ray_processes() -> list[str]:
    found = subprocess.run(["pgrep", "-fa", "raylet|gcs_server|ray::"], capture_output=True, text=True).stdout
    return [line for line in found.splitlines() if "pgrep" not in line]


@pytest.fixture(scope="module")
def app(tiny_config: ModelConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    assert not ray_processes(), "a Ray cluster was already running"
    app = App(tiny_config, tmp_path_factory.mktemp("replicas"), "--replicas", "2", "--concurrency", "8")
    wait_until(lambda: replicas(app)["ready"] == 2, timeout=90, what="two replicas ready")
    yield app
    app.process.send_signal(signal.SIGTERM)  # a graceful stop takes the replicas and the cluster down
    assert app.process.wait(60) == 0
    wait_until(lambda: not ray_processes(), timeout=30)


def replicas(app: App) -> dict:
    return httpx.get(app.url + "readyz").json().get("replicas", {"ready": 0})


def test_two_replicas_serve_sixteen_clients_with_the_single_process_answers(app: App, tiny_model: PandaGPT, tiny_engine: Engine) -> None:
    questions = [f"Question number {i}: what do you know?" for i in range(16)]
    expected = {q: list(ChatSession().ask(tiny_model, tiny_engine, q, SamplingParams(12, **GREEDY)))[-1] for q in questions}
    answers: dict[str, str] = {}

    def one(question: str) -> None:
        answers[question] = Client(app.url, verbose=False).predict(question, max_new_tokens=12, api_name="/chat", **GREEDY)

    before = dict(replicas(app)["answers"])
    threads = [threading.Thread(target=one, args=(q,)) for q in questions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert answers == expected, "each client gets its own answer, the one the single-process app gives"
    after = replicas(app)["answers"]
    used = {replica for replica, count in after.items() if count > before.get(replica, 0)}
    assert len(used) == 2, f"both replicas answered: {after}"


def test_files_are_encoded_and_projected_on_a_replica_with_the_single_process_answer(app: App, tiny_model: PandaGPT, tiny_engine: Engine) -> None:
    """Two files summed with weights: ImageBind and llama_proj run on a replica, the answer is the one
    the single-process app gives."""
    attached = [Attachment.of(IMAGE, Modality.IMAGE), Attachment.of(AUDIO, Modality.AUDIO, weight=0.5)]
    expected = list(ChatSession().ask(tiny_model, tiny_engine, "What is this?", SamplingParams(12, **GREEDY), attached=attached))[-1]
    answer = Client(app.url, verbose=False).predict(
        "What is this?",
        image=handle_file(str(IMAGE)),
        audio=handle_file(str(AUDIO)),
        weights={"audio": 0.5},
        max_new_tokens=12,
        api_name="/chat",
        **GREEDY,
    )
    assert answer == expected


def test_imagebinds_view_and_answer_each_run_on_the_replicas_with_the_single_process_results(
    app: App, tiny_model: PandaGPT, tiny_engine: Engine, tiny_config: ModelConfig, tmp_path: Path
) -> None:
    """The view's vectors, labels and outputs come from a replica's ImageBind; each row of /answer_each
    is decoded on the replicas: all equal what a single-process app (the same weights) gives."""
    single = App(tiny_config, tmp_path)
    try:
        files = {"image": handle_file(str(IMAGE)), "audio": handle_file(str(AUDIO))}
        labels = "a sunset, a dog barking, rain"
        view, expected = (
            json.loads(Client(url, verbose=False).predict(**files, labels=labels, api_name="/imagebind_view")) for url in (app.url, single.url)
        )
        assert view["files"] == expected["files"]
        for table in ("similarity", "probabilities"):
            assert sum(view[table], []) == pytest.approx(sum(expected[table], []), abs=1e-6), table
        rows, expected_rows = (
            json.loads(Client(url, verbose=False).predict("What is this?", **files, max_new_tokens=12, api_name="/answer_each"))
            for url in (app.url, single.url)
        )
        assert rows == expected_rows and all(row["done"] and not row["error"] for row in rows)
        texts = [row["text"] for row in rows]
        assert len(set(texts)) == 3, f"each file's row, and the sum's, is an answer of its own (swapped rows would pass otherwise): {texts}"
    finally:
        single.stop()


def test_a_replica_killed_mid_answer_ends_its_answers_keeping_their_text_and_the_others_go_on(
    app: App, tiny_model: PandaGPT, tiny_engine: Engine
) -> None:
    def single_process(question: str, tokens: int) -> str:
        return list(ChatSession().ask(tiny_model, tiny_engine, question, SamplingParams(tokens, **GREEDY)))[-1]

    v1 = openai.OpenAI(base_url=app.url + "v1", api_key="none", max_retries=0)
    streams = [
        v1.chat.completions.create(
            model="pandagpt-tiny", messages=[{"role": "user", "content": f"Story {i}"}], max_tokens=1024, stream=True, **GREEDY
        )
        for i in range(6)
    ]
    firsts = [next(iter(stream)) for stream in streams]
    assert all(first.choices[0].delta.role == "assistant" for first in firsts)
    victim = next(iter(replicas(app)["answers"]))
    os.kill(int(victim.rsplit(":", 1)[1]), signal.SIGKILL)
    outcomes: list[tuple[str, str]] = []

    def drain(stream) -> None:
        text = ""
        try:
            for chunk in stream:
                if chunk.choices and chunk.choices[0].finish_reason:
                    outcomes.append(("finished", text))
                    return
                text += (chunk.choices[0].delta.content or "") if chunk.choices else ""
        except openai.APIError as error:
            outcomes.append((str(error), text))

    threads = [threading.Thread(target=drain, args=(stream,)) for stream in streams]
    for thread in threads:
        thread.start()
    meanwhile = v1.chat.completions.create(model="pandagpt-tiny", messages=[{"role": "user", "content": "Still there?"}], max_tokens=4, **GREEDY)
    assert meanwhile.choices[0].message.content == single_process("Still there?", 4), "new requests succeed on the other replica meanwhile"
    for thread in threads:
        thread.join(120)
    lost = [text for outcome, text in outcomes if "replica answering this stopped" in outcome]
    finished = [text for outcome, text in outcomes if outcome == "finished"]
    assert lost and finished and len(lost) + len(finished) == 6, outcomes
    wait_until(lambda: replicas(app)["ready"] == 2, timeout=120)  # Serve restarted it
    again = Client(app.url, verbose=False).predict("And now?", max_new_tokens=4, api_name="/chat", **GREEDY)
    assert again == single_process("And now?", 4), "the restarted replica answers as the single-process app does"


def test_without_replica_flags_the_app_never_imports_ray(tmp_path: Path) -> None:
    probe = "import sys, pandagpt_demo.app.server, pandagpt_demo.app.web.page; print('ray' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
