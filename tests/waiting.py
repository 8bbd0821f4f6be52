"""Waiting on an event itself, not on a window of time: the one poll-until-true helper of the tests.

A fixed sleep or a short timeout guesses how long something takes; on a loaded 2-core machine the
guess is sometimes wrong and the test flakes. `wait_until` polls the condition itself, with a deadline
generous enough that only an event that never comes reaches it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float = 60, interval: float = 0.05, what: str = "the condition") -> T:
    """Call `condition` every `interval` seconds until it returns a true value, and return that value;
    fail (AssertionError, naming `what` and the last value) if `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what} never came true in {timeout:g} s (last: {value!r})"
        time.sleep(interval)
    return value
