"""The parts that keep a public demo in bounds, without a server: uploads, sessions, draining, readiness."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from pandagpt_demo.app.answering.uploaded import uploaded_path
from pandagpt_demo.app.api.monitoring import readiness
from pandagpt_demo.app.conversation.session import ChatSession
from pandagpt_demo.app.public.fetcher import FetchPolicy
from pandagpt_demo.app.public.housekeeping import Housekeeping
from pandagpt_demo.app.public.lifecycle import RESTARTING, Lifecycle
from pandagpt_demo.app.public.sessions import SessionRegistry
from pandagpt_demo.app.public.uploads import UploadStore
from pandagpt_demo.app.runtime import ModelChoice, ModelHandle
from pandagpt_demo.config import ModelConfig, PublicLimits, ServingConfig
from pandagpt_demo.errors import Unavailable
from pandagpt_demo.model.modalities import MediaError, Modality


def upload(root: Path, name: str, size: int, age: float = 0.0) -> Path:
    """A file as Gradio stores an upload (in a folder of its own), `age` seconds old."""
    path = root / f"h{name}" / name
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x" * size)
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


def test_unheld_files_go_after_their_grace_and_released_ones_at_once(tmp_path: Path) -> None:
    store = UploadStore(tmp_path, budget=10_000, grace=60)
    fresh, old, held, kept = (
        upload(tmp_path, "fresh.png", 100),
        upload(tmp_path, "old.png", 100, age=120),
        upload(tmp_path, "held.wav", 100, age=120),
        upload(tmp_path, "kept.jpg", 100, age=120),
    )
    store._keep = lambda: {kept}
    store.hold("tab-1", [held])
    store.sweep()
    assert not old.exists() and not old.parent.exists(), "an old file nobody holds goes, with its folder"
    assert fresh.exists() and held.exists() and kept.exists()
    store.hold("tab-1", [fresh])  # the tab asked about another file: the one it held before is dropped
    store.sweep()
    assert not held.exists() and fresh.exists()
    store.hold("tab-2", [fresh])
    store.release("tab-1")
    store.sweep()
    assert fresh.exists(), "still held by another session"
    store.release("tab-2")
    store.sweep()
    assert not fresh.exists(), "released by everyone: gone at the next sweep, grace or not"
    assert kept.exists(), "Gradio's own files (examples) are never deleted"


def test_the_budget_deletes_the_oldest_unheld_files_first_and_refuses_what_cannot_fit(tmp_path: Path) -> None:
    store = UploadStore(tmp_path, budget=1300, grace=3600)
    oldest, middle, newest = (upload(tmp_path, f"{n}.png", 300, age=a) for n, a in (("a", 30), ("b", 20), ("c", 10)))
    held = upload(tmp_path, "held.png", 300, age=40)
    store.hold("tab", [held])
    assert store.reserve(250), "room for 250 more bytes: the oldest unheld file (only) goes"
    assert not oldest.exists() and middle.exists() and newest.exists() and held.exists()
    assert store.usage() + 250 <= 1300
    assert not store.reserve(800), "even with every unheld file gone 800 more bytes do not fit beside the held file and the reservation"
    assert middle.exists() and newest.exists() and held.exists(), "so nothing was deleted for it"
    store.unreserve(250)
    assert store.reserve(600)


def test_gradios_own_files_do_not_count_against_the_budget(tmp_path: Path) -> None:
    """The examples' copies are the app's, made once at start: a budget smaller than they are
    still bounds (and admits) what visitors upload."""
    store = UploadStore(tmp_path, budget=500, grace=3600)
    kept = upload(tmp_path, "example.wav", 2000, age=100)
    store._keep = lambda: {kept}
    assert store.usage() == 0
    assert store.reserve(400), "room beside the examples"
    visitor = upload(tmp_path, "visitor.png", 400)
    store.unreserve(400)
    assert store.reserve(400) and not visitor.exists() and kept.exists(), "the visitor's unheld file goes for room, the example stays"
    store.unreserve(400)
    assert not store.reserve(600), "more than the budget never fits"


def test_a_removed_upload_asks_the_user_to_attach_it_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    path = upload(tmp_path, "photo.png", 10)
    assert uploaded_path(Modality.IMAGE, str(path), FetchPolicy()) == str(path)
    path.unlink()
    with pytest.raises(MediaError, match=r"'photo.png': it is no longer on the server .* please attach it again"):
        uploaded_path(Modality.IMAGE, str(path), FetchPolicy())


def test_a_url_of_the_servers_own_file_route_names_only_an_upload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `gradio upload-mcp` returns maps to the upload itself; any other path behind that route is
    fetched as a URL, and a private address is refused (public/fetcher.py)."""
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))
    path = upload(tmp_path / "uploads", "a photo#1.png", 10)
    own = "http://127.0.0.1:7860/gradio_api/file=" + str(path).replace(" ", "%20").replace("#", "%23")
    assert uploaded_path(Modality.IMAGE, own, FetchPolicy()) == str(path)
    outside = upload(tmp_path, "secret.png", 10)
    for url in ("http://127.0.0.1:7860/gradio_api/file=" + str(outside), own + "?x=1", own.replace("file=", "files=")):
        with pytest.raises(MediaError, match="could not be read"):
            uploaded_path(Modality.IMAGE, url, FetchPolicy())


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_sessions_are_capped_and_idle_ones_expire_with_their_files(tmp_path: Path) -> None:
    clock, ended = Clock(), []
    registry = SessionRegistry(max_sessions=2, ttl=600, on_end=ended.append, clock=clock)
    first, second, third = ChatSession.from_history([("Hi", "Hello")]), ChatSession(), ChatSession()
    assert registry.enter("a", first) is None and registry.enter("b", second) is None
    with pytest.raises(Unavailable, match=r"The demo is full right now \(it takes 2 at a time\); please come back"):
        registry.enter("c", third)
    assert first.exchanges, "nobody already chatting loses their chat to the newcomer"
    clock.now = 500
    registry.enter("a", first)  # still active
    clock.now = 700
    assert registry.sweep() == 1 and ended == ["b"], "only the idle session expires"
    assert registry.enter("c", third) is None, "its place is free again"
    clock.now = 1400
    registry.sweep()
    assert first.messages() == [] and ended == ["b", "a", "c"], "an expired session is cleared and its files released"
    notice = registry.enter("a", first)
    assert notice and "idle for more than 10 minutes and was cleared" in notice
    registry.leave("a")
    assert len(registry) == 0 and ended[-1] == "a"


def test_a_sweep_forgets_contents_whose_file_is_gone(tmp_path: Path) -> None:
    """A reloaded tab finds its files by content; entries for deleted files do not pile up between finds."""
    house = Housekeeping(PublicLimits(), tmp_path)
    kept, gone = tmp_path / "kept.png", tmp_path / "gone.png"
    kept.write_bytes(b"k")
    gone.write_bytes(b"g")
    house.hold("tab", [kept, gone], {"k" * 64: kept, "g" * 64: gone})
    gone.unlink()
    house.sweep()
    assert house._contents == {"k" * 64: kept}
    assert house.find("k" * 64) == kept


def test_draining_refuses_new_answers_and_waits_for_those_in_flight() -> None:
    lifecycle = Lifecycle(drain_seconds=5)
    closed = threading.Event()
    finished = threading.Event()

    def answer() -> None:
        with lifecycle.answering():
            time.sleep(0.3)
        finished.set()

    worker = threading.Thread(target=answer)
    worker.start()
    time.sleep(0.05)
    started = time.monotonic()
    drainer = threading.Thread(target=lifecycle.drain, args=(closed.set,))
    drainer.start()
    time.sleep(0.05)
    with pytest.raises(Unavailable, match=RESTARTING), lifecycle.answering():
        pass
    drainer.join(10)
    assert finished.is_set() and closed.is_set(), "the answer in flight finished before the engine closed"
    assert time.monotonic() - started < 2


def test_draining_ends_what_does_not_finish_in_time() -> None:
    lifecycle = Lifecycle(drain_seconds=0.2)
    engine_closed = threading.Event()

    def answer() -> None:
        with lifecycle.answering():
            engine_closed.wait(10)  # an answer that only ends when the engine closes

    worker = threading.Thread(target=answer)
    worker.start()
    time.sleep(0.05)
    started = time.monotonic()
    lifecycle.drain(engine_closed.set)
    assert 0.2 <= time.monotonic() - started < 3 and lifecycle.in_flight == 0


def test_readiness_while_loading_when_ready_and_while_draining(tiny_config: ModelConfig) -> None:
    handle = ModelHandle(ModelChoice(tiny_config, None), ServingConfig(max_batch=2, max_waiting=4))
    lifecycle = Lifecycle(drain_seconds=1)
    loading = readiness(handle, lifecycle)
    assert loading["ready"] is False and loading["reasons"] == ["Starting…"]
    handle.start().get(timeout=120)
    ready = readiness(handle, lifecycle)
    assert ready["ready"] is True and ready["reasons"] == [] and ready["engine"]["active"] == 0
    lifecycle.draining.set()
    assert readiness(handle, lifecycle)["reasons"] == ["draining: shutting down"]
    handle.close()
    assert "the engine is not running" in readiness(handle, lifecycle)["reasons"]
