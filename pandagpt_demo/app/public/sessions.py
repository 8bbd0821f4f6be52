"""The live chat sessions of a public demo: how many at once, and how long an idle one lives.

Gradio keeps each tab's state for as long as it likes (and drops the oldest silently past its
capacity); here every page action checks in (`enter`). Past `max_sessions` a new visitor is told to
come back later, while everyone already chatting keeps their chat. A session idle for `ttl`
seconds is cleared (history, cached vectors) and its uploads released; if its tab comes back, it
starts afresh and is told why.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from pandagpt_demo.app.conversation.session import ChatSession
from pandagpt_demo.errors import Unavailable

log = logging.getLogger(__name__)

FORGET_AFTER = 10_000  # expired sessions remembered (to tell a returning tab why its chat is gone)


@dataclass
class _Live:
    session: ChatSession
    seen: float


class SessionRegistry:
    """Live sessions by Gradio's session hash; `on_end(key)` hears of each one that ends (expired or closed)."""

    def __init__(
        self, max_sessions: int, ttl: float, on_end: Callable[[str], None] = lambda key: None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_sessions = max_sessions
        self.ttl = ttl
        self._on_end = on_end
        self._clock = clock
        self._live: dict[str, _Live] = {}
        self._expired: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def enter(self, key: str, session: ChatSession) -> str | None:
        """Check `session` in for a page action: registered if new, refused with `Unavailable` if the demo
        is full. Returns a notice for a tab whose idle session was cleared meanwhile."""
        with self._lock:
            live = self._live.get(key)
            if live is not None:
                live.seen = self._clock()
                live.session = session
                return None
            if len(self._live) >= self.max_sessions:
                self._expire_idle()  # a place held by an idle session is free now, not at the next sweep
            if len(self._live) >= self.max_sessions:
                log.info("session refused: %d live sessions, the limit", len(self._live))
                raise Unavailable(f"The demo is full right now (it takes {self.max_sessions} at a time); please come back in a few minutes.")
            self._live[key] = _Live(session, self._clock())
            was_expired = self._expired.pop(key, False) is None
        if was_expired:
            return f"Your chat was idle for more than {self.ttl / 60:g} minutes and was cleared; you can start again."
        return None

    def touch(self, key: str) -> None:
        """Session `key` was active just now (an answer ended): idle time counts from here."""
        with self._lock:
            if key in self._live:
                self._live[key].seen = self._clock()

    def leave(self, key: str) -> None:
        """The tab closed: its session ends now."""
        with self._lock:
            live = self._live.pop(key, None)
        if live is not None:
            self._end(key, live.session)

    def sweep(self) -> int:
        """End every session idle for longer than the TTL; how many ended."""
        with self._lock:
            ended = self._expire_idle()
        if ended:
            log.info("%d idle session(s) expired, %d live", ended, len(self))
        return ended

    def _expire_idle(self) -> int:
        """(With the lock held.) Clearing a session touches only its own state, never this registry."""
        now = self._clock()
        idle = {key: live for key, live in self._live.items() if now - live.seen > self.ttl}
        for key, live in idle.items():
            del self._live[key]
            self._expired[key] = None
            while len(self._expired) > FORGET_AFTER:
                self._expired.popitem(last=False)
            self._end(key, live.session)
        return len(idle)

    def _end(self, key: str, session: ChatSession) -> None:
        session.clear()
        self._on_end(key)

    def __len__(self) -> int:
        with self._lock:
            return len(self._live)
