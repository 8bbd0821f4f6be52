"""A soak test of the launched app as a public link sees it: many strangers, each with new uploads.

2,000 requests (`SOAK_REQUESTS`), half through `/chat` and half through the page's `/send`, from 8
clients at once, each with an image never seen before. Nothing may fail, the upload folder may
never exceed its budget (sampled every 20 ms), and the app's resident memory may grow by less
than 5% between request 200 and the last (gradio_state.py and heap.py keep it level). Marked
`soak`: the default run skips it, CI runs it.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from pandagpt_demo.config import ModelConfig
from tests.app.test_app import send_args
from tests.launched import App
from tests.media import distinct_image

REQUESTS = int(os.environ.get("SOAK_REQUESTS", "2000"))
CLIENTS = 8
BUDGET = 1_500_000  # bytes: room for about 50 of the ~28 kB images, far fewer than the run uploads
WARM = 200  # requests before the memory baseline
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


@pytest.mark.soak
def test_soak_many_clients_with_distinct_uploads(tiny_config: ModelConfig, tmp_path: Path) -> None:
    app = App(tiny_config, tmp_path, "--max-upload-disk-gb", str(BUDGET / 1e9), "--concurrency", "8", "--max-sessions", "50")
    counter = itertools.count()
    done = itertools.count(1)
    failures: list[str] = []
    largest = [0]
    baseline: list[int] = []
    finished = threading.Event()
    images = tmp_path / "images"
    images.mkdir()

    examples = app.folder_bytes()  # the examples' copies Gradio made at start: the app's own, outside the budget

    def sample_folder() -> None:
        while not finished.is_set():
            largest[0] = max(largest[0], app.folder_bytes() - examples)
            time.sleep(0.02)

    def client_loop() -> None:
        client = Client(app.url, verbose=False)
        sends = 0
        while (i := next(counter)) < REQUESTS:
            image = str(distinct_image(images / f"{i}.png", seed=i))
            try:
                if i % 2:
                    chat, _, _ = client.predict(*send_args(f"Request {i}?", image, max_new_tokens=3), api_name="/send")
                    assert chat and chat[-1]["role"] == "assistant", f"/send {i} gave no answer: {chat[-2:]}"
                    sends += 1
                    if sends % SENDS_PER_CHAT == 0:  # a user who starts afresh now and then: the files in use are let go
                        client.predict(api_name="/clear")
                else:
                    assert isinstance(client.predict(f"Request {i}?", image=handle_file(image), max_new_tokens=3, api_name="/chat"), str)
            except Exception as error:  # noqa: BLE001 - every failure is collected and reported
                failures.append(f"request {i}: {error!r}")
            finally:
                (images / f"{i}.png").unlink()
            if next(done) == WARM:
                baseline.append(resident_bytes(app.process.pid))

    sampler = threading.Thread(target=sample_folder, daemon=True)
    sampler.start()
    started = time.monotonic()
    try:
        workers = [threading.Thread(target=client_loop) for _ in range(CLIENTS)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        end = resident_bytes(app.process.pid)
    finally:
        finished.set()
        app.stop()
    elapsed = time.monotonic() - started
    print(
        f"soak: {REQUESTS} requests in {elapsed:.0f} s; upload folder at most {largest[0]:,} B of {BUDGET:,}; RSS {baseline[0] / 2**20:.0f} -> {end / 2**20:.0f} MiB"
    )
    assert not failures, f"{len(failures)} failures, the first: {failures[:3]}"
    assert largest[0] <= BUDGET
    assert end < 1.05 * baseline[0]
