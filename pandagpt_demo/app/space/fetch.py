"""Fetching the real weights while the tiny model serves, then swapping them in without a restart.

The fetch is the weights command's own `download` (its plan, sources, disk check against the
folder's own disk, verification and manifest), run in a thread; its progress (part, bytes, rate,
time left) is the status line's second row. Once `check` passes the set is loaded beside the tiny
model and replaces it (`ModelHandle.replace`). Any failure (no source, no space, no access, a
damaged file, a load that fails) leaves the tiny model serving and puts the reason in its banner.
"""

from __future__ import annotations

import logging
import threading

from pandagpt_demo.app.runtime import ModelChoice, ModelHandle
from pandagpt_demo.config import ModelConfig
from pandagpt_demo.errors import first_line
from pandagpt_demo.weights.download import Request, download
from pandagpt_demo.weights.fetch_errors import DownloadError
from pandagpt_demo.weights.progress import DownloadMeter

log = logging.getLogger(__name__)
TICK_S = 1.0  # how often the status line's progress is refreshed


class WeightsFetch:
    """One fetch of `request.model` into `request.directory`, and the swap that follows it."""

    def __init__(self, handle: ModelHandle, request: Request, config: ModelConfig, precision_reason: str | None = None) -> None:
        """`config`: the model to load once fetched (the request's size and folder, the run settings asked
        for or chosen from memory, as `precision_reason` says)."""
        self.handle = handle
        self.request = request
        self.config = config
        self.precision_reason = precision_reason
        self.meter = DownloadMeter()
        self.done = threading.Event()
        self._fetching = threading.Event()
        self._lock = threading.Lock()  # the progress line is never written after the fetch has moved on

    def start(self) -> WeightsFetch:
        size = self.request.model
        self.handle.upgrading = True
        self.handle.fall_back(f"The real {size} weights are being fetched into '{self.request.directory}'; they replace it once verified.")
        self.handle.notice = f"Fetching the {size} weights: planning…"
        threading.Thread(target=self._run, name="weights-fetch", daemon=True).start()
        threading.Thread(target=self._tick, name="weights-fetch-progress", daemon=True).start()
        return self

    def _tick(self) -> None:
        while not self.done.wait(TICK_S):
            with self._lock:
                if self._fetching.is_set():
                    self.handle.notice = f"Fetching the {self.request.model} weights: {self.meter.snapshot().describe()}"

    def _run(self) -> None:
        size = self.request.model
        try:
            self._fetching.set()
            report = download(self.request, say=lambda line: log.info("fetch: %s", line), meter=self.meter)
            with self._lock:
                self._fetching.clear()
            if not report.ok:
                self._fail(report.explanation())
                return
            self.handle.notice = f"The {size} weights are fetched and verified; loading them (the tiny model answers meanwhile)…"
            self.handle.replace(ModelChoice(self.config, None, self.precision_reason))
            self.handle.notice = ""
        except DownloadError as error:
            self._fail(str(error))
        except Exception as error:  # a load that failed, a fault of ours: logged in full, said in one line
            log.exception("fetching or loading the %s weights failed", size)
            self._fail(f"{type(error).__name__}: {first_line(error)}")
        finally:
            with self._lock:
                self._fetching.clear()
            self.handle.upgrading = False
            self.done.set()

    def _fail(self, reason: str) -> None:
        log.warning("the %s weights were not swapped in: %s", self.request.model, reason)
        with self._lock:
            self._fetching.clear()
            self.handle.fall_back(f"Fetching the {self.request.model} weights failed, so the tiny model stays: {reason}")
            self.handle.notice = ""
