"""A stand-in for Hugging Face's `spaces` package on a ZeroGPU Space (the real one needs Hugging
Face's ZeroGPU service), keeping the parts of its contract the app depends on:

- `GPU(task, duration=fn)`: each call first asks `fn(*args, **kwargs)` for its seconds;
- the task runs elsewhere (there a forked worker; here a thread) on pickled copies of the call's
  arguments, and every value it yields comes back pickled;
- a call still running when its seconds are up is aborted, and what it had yielded is lost.

Each call is appended as one JSON line to $SPACES_STAND_IN_LOG: the task's name, the seconds asked
for, the threads alive at its start, how it ended (completed / aborted) and after how long.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import queue
import threading
import time

DEFAULT_S = 60


def GPU(task=None, *, duration=None, size=None):  # noqa: N802 - the real package's name
    if task is None:
        return functools.partial(GPU, duration=duration, size=size)

    @functools.wraps(task)
    def handler(*args, **kwargs):
        seconds = duration(*args, **kwargs) if callable(duration) else duration or DEFAULT_S
        args, kwargs = pickle.loads(pickle.dumps((args, kwargs)))
        record = {"task": task.__name__, "duration": seconds, "threads": [t.name for t in threading.enumerate()]}
        results: queue.Queue = queue.Queue()

        def iterate() -> None:
            try:
                for value in task(*args, **kwargs):
                    results.put(("value", pickle.dumps(value)))
            except Exception as error:  # noqa: BLE001 - handed back to the caller, as the real worker does
                results.put(("error", error))
            results.put(("end", None))

        started = time.monotonic()
        threading.Thread(target=iterate, name="zerogpu-worker", daemon=True).start()
        try:
            while True:
                left = started + seconds - time.monotonic()
                try:
                    kind, value = results.get(timeout=max(left, 0.0))
                except queue.Empty:
                    record["ended"] = "aborted"
                    raise RuntimeError("ZeroGPU worker error: GPU task aborted") from None
                if kind == "end":
                    record["ended"] = "completed"
                    return
                if kind == "error":
                    record["ended"] = "raised"
                    raise value
                yield pickle.loads(value)
        finally:
            record["elapsed"] = time.monotonic() - started
            with open(os.environ["SPACES_STAND_IN_LOG"], "a") as log:
                log.write(json.dumps(record) + "\n")

    return handler
