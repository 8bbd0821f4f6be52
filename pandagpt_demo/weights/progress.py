"""How far a download has got, for a person watching a page rather than a terminal.

`download` tells a `DownloadMeter` the plan's total and which part it is fetching; every byte
counted comes from the progress bars of the fetches themselves (huggingface_hub's `tqdm_class` and
the URL fetch's own bar), so what the page says is what arrived. The rate is taken over the last
`RATE_WINDOW_S` seconds, so a stall shows as a falling rate rather than an old average.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

from tqdm import tqdm

from pandagpt_demo.files import human_size

RATE_WINDOW_S = 10.0


@dataclass(frozen=True)
class Progress:
    """A snapshot: the part being fetched (1-based of `parts`), bytes done of `total`, bytes/s."""

    part: str
    index: int
    parts: int
    done: int
    total: int
    rate: float

    @property
    def seconds_left(self) -> float | None:
        return (self.total - self.done) / self.rate if self.rate > 0 and self.total >= self.done else None

    def describe(self) -> str:
        """One line: 'vicuna_7b_v0 (part 2 of 3): 3.2 GB of 19.1 GB, 45.0 MB/s, about 6 min left'."""
        where = f"{self.part} (part {self.index} of {self.parts})" if self.part else "planning"
        amounts = f"{human_size(self.done)} of {human_size(self.total)}"
        rate = f"{human_size(self.rate)}/s" if self.rate > 0 else "waiting for data"
        left = self.seconds_left
        return f"{where}: {amounts}, {rate}" + (f", about {_duration(left)} left" if left is not None else "")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class DownloadMeter:
    """Bytes fetched so far of a planned total, thread-safe (a fetch may count from its own threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = self._done = 0
        self._part, self._index, self._parts = "", 0, 0
        self._samples: deque[tuple[float, int]] = deque()

    def begin(self, total: int, parts: int) -> None:
        with self._lock:
            self._total, self._parts, self._done = total, parts, 0
            self._samples.clear()
            self._samples.append((time.monotonic(), 0))

    def part(self, name: str, index: int) -> None:
        with self._lock:
            self._part, self._index = name, index

    def add(self, count: int) -> None:
        now = time.monotonic()
        with self._lock:
            self._done += count
            self._samples.append((now, self._done))
            while len(self._samples) > 2 and now - self._samples[1][0] > RATE_WINDOW_S:
                self._samples.popleft()

    def snapshot(self) -> Progress:
        now = time.monotonic()
        with self._lock:
            rate = 0.0
            if self._samples:
                start, at = self._samples[0]
                rate = (self._done - at) / (now - start) if now > start else 0.0
            return Progress(self._part, self._index, self._parts, self._done, self._total, rate)

    def bar_class(self) -> type[tqdm]:
        """A tqdm class whose bars also count into this meter (for `hf_hub_download(tqdm_class=...)`)."""
        meter = self

        class MeteredBar(tqdm):
            def update(self, n: float | None = 1) -> bool | None:
                if n:
                    meter.add(int(n))
                return super().update(n)

        return MeteredBar
