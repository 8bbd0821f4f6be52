"""The stand-in's rules observed, in a process of their own (the stand-in patches torch for good):
tests/app/space/test_zerogpu.py runs this file and checks the JSON it prints."""

from __future__ import annotations

import json
import os
import threading
import time
from types import SimpleNamespace

import spaces  # first, as app.py imports it
import torch
from gradio.context import LocalContext

from tests.shared_memory import shared_fds

seen: dict[str, object] = {}
on_gpu = torch.ones(3).to("cuda")  # on the importing thread
seen["importing thread"] = str(on_gpu.device)


def elsewhere() -> None:
    try:
        torch.ones(1).to("cuda")
        seen["other thread"] = "moved"
    except RuntimeError as error:
        seen["other thread"] = str(error)


thread = threading.Thread(target=elsewhere)
thread.start()
thread.join()

calls = {"made": 0}


@spaces.GPU(duration=lambda what, given=None: 2)
def task(what: str, given: torch.Tensor | None = None):
    started = time.monotonic()
    calls["made"] += 1
    if what == "count":
        yield os.getpid(), calls["made"], str((on_gpu * 2).device), started
    elif what == "given":
        yield given.is_shared()
    elif what == "host tensor kept":
        yield (on_gpu * 2).cpu()
    elif what == "gpu tensor":
        yield on_gpu * 2
    elif what == "host tensor":
        yield (on_gpu * 2).cpu().tolist()
    elif what == "mixed":
        yield on_gpu + torch.ones(3)
    elif what == "secret":
        raise ValueError("a secret message")
    elif what == "too long":
        yield "started"
        threading.Event().wait(5)
        yield "finished"


def outcome(what: str, given: torch.Tensor | None = None) -> object:
    got = []
    try:
        for value in task(what, given):
            got.append(value)
    except Exception as error:  # noqa: BLE001 - what the caller sees is the observation
        return {"got": got, "raised": type(error).__name__, "message": str(error)}
    return got


seen["first call"], seen["second call"] = outcome("count"), outcome("count")
seen["main pid"], seen["calls in main"] = os.getpid(), calls["made"]
for what in ("gpu tensor", "host tensor", "mixed", "secret", "too long"):
    seen[what] = outcome(what)

before = shared_fds()
given = torch.ones(4)
[kept] = outcome("host tensor kept")
seen["shared"] = {"kept": kept.is_shared(), "given there": outcome("given", given), "given here": given.is_shared(), "fds": shared_fds() - before}
del kept, given
seen["shared"]["fds after"] = shared_fds() - before

visitor = SimpleNamespace(headers={"x-ip-token": "visitor's token"})  # what spaces reads of a gr.Request
LocalContext.request.set(visitor)
outcome("host tensor")
elsewhere = threading.Thread(target=outcome, args=("host tensor",))  # a thread of the app's own: no request
elsewhere.start()
elsewhere.join()
print(json.dumps(seen))
