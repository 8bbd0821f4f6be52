"""`python tests/slow_app.py ARGS` runs app.py with every forward pass of the LLM slowed by
$SLOW_STEP_SECONDS, so that on a fast CPU answers are still in flight when a test looks (a shutdown,
a stall). Everything else is the real app."""

from __future__ import annotations

import os
import sys
import time

from pandagpt_demo.app.server import main
from pandagpt_demo.model.pandagpt import PandaGPT

_load = PandaGPT.load.__func__


def _slow_load(cls, *args, **kwargs) -> PandaGPT:
    model = _load(cls, *args, **kwargs)
    delay = float(os.environ.get("SLOW_STEP_SECONDS", "0.02"))
    model.llm.register_forward_pre_hook(lambda module, inputs: time.sleep(delay))
    return model


PandaGPT.load = classmethod(_slow_load)

if __name__ == "__main__":
    main(sys.argv[1:])
