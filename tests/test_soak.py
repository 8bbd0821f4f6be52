"""A soak test of the launched app as a public link sees it: many strangers, each with new uploads.

2,000 requests (`SOAK_REQUESTS`), half through `/chat` and half through the page's `/send`, from 8
clients at once, each with an image never seen before. Nothing may fail, the upload folder may
never exceed its budget (sampled every 20 ms), and the app's resident memory may grow by less
than 5% (gradio_state.py and heap.py keep it level): measured in the same state at both ends, idle
(no request in flight, the engine empty) after a warm-up round of 200 requests and again after the
rest, the same 8 clients (so the same sessions) in both rounds. Marked `soak`: the default run skips
it, CI runs it.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file

from pandagpt_demo.config import ModelConfig
from tests.app.test_app import send_args
from tests.launched import App
from tests.media import distinct_image
from tests.waiting import wait_until

REQUESTS = int(os.environ.get("SOAK_REQUESTS", "2000"))
CLIENTS = 8
BUDGET = 1_500_000  # bytes: room for about 50 of the ~28 kB images, far fewer than the run uploads
WARM = 200  # the warm-up round: requests before the memory baseline, taken idle after them
# A chat's files stay held (undeletable) until it is cleared: each client clears after this many of
# its own /send calls, so at most CLIENTS * (SENDS_PER_CHAT + 1) images are held or arriving at once
# (~900 kB); the rest of the budget is what eviction works with. A chat left to grow could hold the
# whole budget, and then 507 is the right answer, not a failure of the app.
SENDS_PER_CHAT = 3


def resident_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def idle_resident_bytes(app: App) -> int:
    """The app's RSS once it is idle: every client has its answer and the engine holds no row."""

    def idle() -> bool:
        engine = httpx.get(app.url + "readyz", timeout=30).json()["engine"]
        return engine["active"] == 0 and engine["waiting"] == 0

    wait_until(idle, timeout=120, what="an idle engine")
    return resident_bytes(app.process.pid)


@pytest.mark.soak
def test_soak_many_clients_with_distinct_uploads(tiny_config: ModelConfig, tmp_path: Path) -> None:
    app = App(tiny_config, tmp_path, "--max-upload-disk-gb", str(BUDGET / 1e9), "--concurrency", "8", "--max-sessions", "50")
    counter = itertools.count()
    failures: list[str] = []
    largest = [0]
    finished = threading.Event()
    images = tmp_path / "images"
    images.mkdir()

    examples = app.folder_bytes()  # the examples' copies Gradio made at start: the app's own, outside the budget

    def sample_folder() -> None:
        while not finished.is_set():
            largest[0] = max(largest[0], app.folder_bytes() - examples)
            time.sleep(0.02)

    clients = [Client(app.url, verbose=False) for _ in range(CLIENTS)]
    sends = [0] * CLIENTS

    def client_loop(k: int, until: int) -> None:
        client = clients[k]
        while (i := next(counter)) < until:
            image = str(distinct_image(images / f"{i}.png", seed=i))
            try:
                if i % 2:
                    chat, _, _ = client.predict(*send_args(f"Request {i}?", image, max_new_tokens=3), api_name="/send")
                    assert chat and chat[-1]["role"] == "assistant", f"/send {i} gave no answer: {chat[-2:]}"
                    sends[k] += 1
                    if sends[k] % SENDS_PER_CHAT == 0:  # a user who starts afresh now and then: the files in use are let go
                        client.predict(api_name="/clear")
                else:
                    assert isinstance(client.predict(f"Request {i}?", image=handle_file(image), max_new_tokens=3, api_name="/chat"), str)
            except Exception as error:  # noqa: BLE001 - every failure is collected and reported
                failures.append(f"request {i}: {error!r}")
            finally:
                (images / f"{i}.png").unlink()

    def run_round(until: int) -> None:
        """The clients at once until request `until - 1` is sent, then all of them done."""
        nonlocal counter
        workers = [threading.Thread(target=client_loop, args=(k, until)) for k in range(CLIENTS)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        counter = itertools.count(until)  # the loops each drew one number past `until`

    sampler = threading.Thread(target=sample_folder, daemon=True)
    sampler.start()
    started = time.monotonic()
    try:
        run_round(WARM)
        baseline = idle_resident_bytes(app)
        run_round(REQUESTS)
        end = idle_resident_bytes(app)
    finally:
        finished.set()
        app.stop()
    elapsed = time.monotonic() - started
    print(
        f"soak: {REQUESTS} requests in {elapsed:.0f} s; upload folder at most {largest[0]:,} B of {BUDGET:,}; "
        f"idle RSS after {WARM} requests {baseline / 2**20:.1f} MiB, after {REQUESTS} {end / 2**20:.1f} MiB ({end / baseline - 1:+.2%})"
    )
    assert not failures, f"{len(failures)} failures, the first: {failures[:3]}"
    assert largest[0] <= BUDGET
    assert end < 1.05 * baseline, f"idle RSS grew from {baseline / 2**20:.1f} to {end / 2**20:.1f} MiB"
