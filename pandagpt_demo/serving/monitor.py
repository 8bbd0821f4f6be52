"""The engine's load in the log: its stats at INFO every few seconds while it has work."""

from __future__ import annotations

import logging
import threading

from .engine import Engine

log = logging.getLogger(__name__)


class EngineMonitor:
    """A daemon thread that logs `engine.stats()` every `period_s` while requests wait or decode."""

    def __init__(self, engine: Engine, period_s: float = 10.0) -> None:
        self.engine = engine
        self.period_s = period_s
        self._stop = threading.Event()

    def start(self) -> EngineMonitor:
        threading.Thread(target=self._run, name="engine-monitor", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        last_tokens = self.engine.stats().tokens
        while not self._stop.wait(self.period_s) and self.engine.ready:
            stats = self.engine.stats()
            if stats.waiting or stats.active or stats.tokens != last_tokens:
                rate = (stats.tokens - last_tokens) / self.period_s
                log.info(
                    "engine: %d decoding, %d waiting, %.1f tokens/s, %d tokens and %d steps in all",
                    stats.active,
                    stats.waiting,
                    rate,
                    stats.tokens,
                    stats.steps,
                )
            last_tokens = stats.tokens
