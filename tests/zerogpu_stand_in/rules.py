"""The stand-in's rules observed, in a process of their own (the stand-in patches torch for good):
tests/app/space/test_zerogpu.py runs this file and checks the JSON it prints."""

from __future__ import annotations

import json
import os
import threading

import spaces  # first, as app.py imports it
import torch

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


@spaces.GPU(duration=lambda what: 2)
def task(what: str):
    calls["made"] += 1
    if what == "count":
        yield os.getpid(), calls["made"], str((on_gpu * 2).device)
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


def outcome(what: str) -> object:
    got = []
    try:
        for value in task(what):
            got.append(value)
    except Exception as error:  # noqa: BLE001 - what the caller sees is the observation
        return {"got": got, "raised": type(error).__name__, "message": str(error)}
    return got


seen["first call"], seen["second call"] = outcome("count"), outcome("count")
seen["main pid"], seen["calls in main"] = os.getpid(), calls["made"]
for what in ("gpu tensor", "host tensor", "mixed", "secret", "too long"):
    seen[what] = outcome(what)
print(json.dumps(seen))
