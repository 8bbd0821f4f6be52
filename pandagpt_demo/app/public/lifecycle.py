"""The process's life as a public demo: accepting questions, draining on a signal, stopping cleanly.

On SIGTERM (a Space restarting, Kubernetes, Ray) or SIGINT (Ctrl-C) new questions are refused
("restarting"), answers in flight get up to `drain_seconds` to finish, the rest are ended by
closing the engine (each keeps the text already shown, with a message), and the process exits 0.
A second signal skips the rest of the wait. The process then ends even if some thread is stuck:
a demo told to stop must stop.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

from pandagpt_demo.errors import Unavailable

log = logging.getLogger(__name__)

RESTARTING = "The demo is restarting; please try again shortly."
FLUSH_SECONDS = 5.0  # after the engine closed: time for the handlers to end
SEND_SECONDS = 1.0  # after the last handler ended: time for the server to send its last messages


class Lifecycle:
    """Whether the app accepts questions, and how many answers are in flight."""

    def __init__(self, drain_seconds: float) -> None:
        self.drain_seconds = drain_seconds
        self.draining = threading.Event()
        self._stop = threading.Event()
        self._hurry = threading.Event()
        self._in_flight = 0
        self._changed = threading.Condition()

    @property
    def in_flight(self) -> int:
        with self._changed:
            return self._in_flight

    @contextmanager
    def answering(self) -> Iterator[None]:
        """Around one request that answers: refused with `Unavailable` while draining, counted while it runs."""
        if self.draining.is_set():
            raise Unavailable(RESTARTING)
        with self._changed:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._changed:
                self._in_flight -= 1
                self._changed.notify_all()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT start the drain (call from the main thread)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self._stop.is_set():
            log.warning("%s again: ending the answers in flight now", signal.Signals(signum).name)
            self._hurry.set()
            return
        log.info(
            "%s: draining (new questions refused, up to %g s for %d answer(s) in flight)",
            signal.Signals(signum).name,
            self.drain_seconds,
            self.in_flight,
        )
        self.draining.set()
        self._stop.set()

    def wait_for_stop(self, meanwhile: Callable[[float], None] | None = None) -> None:
        """Block until a signal (or `request_stop`) asks the process to stop. `meanwhile(seconds)` is
        the main thread's other work (the model loads on ZeroGPU), returning within `seconds` when there
        is none; a job it runs delays the stop until it ends."""
        while not self._stop.is_set():  # wakes each second so the main thread keeps handling signals
            if meanwhile is None:
                self._stop.wait(timeout=1.0)
            else:
                meanwhile(1.0)

    def request_stop(self) -> None:
        self.draining.set()
        self._stop.set()

    def drain(self, close_engine: Callable[[], None]) -> None:
        """Wait (up to `drain_seconds`) for the answers in flight, end the rest by closing the engine,
        and give their handlers a moment to send what they have."""
        self.draining.set()
        deadline = time.monotonic() + self.drain_seconds
        self._wait_idle(deadline)
        left = self.in_flight
        if left:
            log.info("drain time over: ending %d answer(s) in flight", left)
        close_engine()
        self._wait_idle(time.monotonic() + FLUSH_SECONDS)
        self._hurry.wait(SEND_SECONDS)
        log.info("drained; stopping")

    def _wait_idle(self, deadline: float) -> None:
        with self._changed:
            while self._in_flight and not self._hurry.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._changed.wait(timeout=min(left, 0.2))


def exit_process() -> NoReturn:
    """Exit 0 now, naming any thread still running (a handler blocked past the drain would
    otherwise keep the process alive through Python's join of non-daemon threads at exit)."""
    stuck = [t.name for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive() and not t.daemon]
    if stuck:
        log.info("exiting with %d thread(s) still running: %s", len(stuck), ", ".join(stuck))
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
