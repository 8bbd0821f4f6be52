"""What a public demo does besides answering: sessions, uploads and the process's life, in one place.

The page's handlers talk to this object only (`enter`, `answering`, `release`, `leave`);
a daemon thread sweeps idle sessions and unused files every `PublicLimits.sweep_every` seconds,
and hands the memory freed meanwhile back to the system (heap.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pandagpt_demo.app.conversation.session import ChatSession
from pandagpt_demo.config import PublicLimits

from .heap import give_back_freed_memory
from .lifecycle import Lifecycle
from .sessions import SessionRegistry
from .uploads import UploadStore

log = logging.getLogger(__name__)


class Housekeeping:
    def __init__(self, limits: PublicLimits, upload_root: Path | str) -> None:
        self.limits = limits
        self.lifecycle = Lifecycle(limits.drain_seconds)
        self._keep: Callable[[], set[Path]] = set
        self.uploads = UploadStore(Path(upload_root), int(limits.max_upload_disk_gb * 1e9), limits.upload_grace, keep=lambda: self._keep())
        self._session_ends: list[Callable[[str], None]] = [lambda key: self.uploads.release(key, linger=True)]
        self.sessions = SessionRegistry(limits.max_sessions, limits.session_ttl, on_end=self._session_ended)
        self._contents: dict[str, Path] = {}  # sha256 -> a file with that content, for resuming chats
        self._stopped = threading.Event()
        self._lock = threading.Lock()

    def keep_files_of(self, blocks: Iterable[object]) -> None:
        """Never delete the files Gradio keeps for these components (their examples' and defaults' copies)."""
        blocks = list(blocks)
        self._keep = lambda: {Path(path) for block in blocks for path in getattr(block, "keep_in_cache", ())}

    def on_session_end(self, callback: Callable[[str], None]) -> None:
        """`callback(key)` is called, after the session's files are released, whenever a session ends."""
        self._session_ends.append(callback)

    def _session_ended(self, key: str) -> None:
        for callback in self._session_ends:
            callback(key)

    def enter(self, key: str, session: ChatSession) -> str | None:
        """A page action of session `key` (see SessionRegistry.enter)."""
        return self.sessions.enter(key, session)

    @contextmanager
    def answering(self, key: str, files: Iterable[Path]) -> Iterator[None]:
        """Around one answer of session `key` about `files`: refused while draining, the files held,
        and the session's idle time counted from the answer's end."""
        with self.lifecycle.answering():
            self.uploads.hold(key, files)
            try:
                yield
            finally:
                self.sessions.touch(key)

    def hold(self, key: str, files: Iterable[Path], contents: dict[str, Path] | None = None) -> None:
        """Session `key` refers to exactly these files; `contents` (sha256 -> file) can be found again by `find`."""
        self.uploads.hold(key, files)
        with self._lock:
            self._contents.update(contents or {})

    def find(self, sha256: str) -> Path | None:
        """A file on the server with this content, if one is left (a reloaded tab resumes its files)."""
        with self._lock:
            path = self._contents.get(sha256)
            if path is not None and not path.exists():
                del self._contents[sha256]
                path = None
        return path

    def release(self, key: str) -> None:
        self.uploads.release(key)

    def leave(self, key: str) -> None:
        self.sessions.leave(key)

    def start(self) -> Housekeeping:
        threading.Thread(target=self._sweep_forever, name="housekeeping", daemon=True).start()
        return self

    def _sweep_forever(self) -> None:
        limits = self.limits
        every = min(limits.sweep_every, limits.session_ttl / 2, max(limits.upload_grace, 1.0) / 2)  # short limits are kept closely
        while not self._stopped.wait(every):
            try:
                self.sweep()
            except Exception:  # noqa: BLE001 - a failed sweep must not end the sweeping
                log.exception("housekeeping sweep failed")

    def sweep(self) -> None:
        self.sessions.sweep()
        self.uploads.sweep()
        with self._lock:  # contents whose file was deleted can never be found again
            self._contents = {sha: path for sha, path in self._contents.items() if path.exists()}
        give_back_freed_memory()

    def stop(self) -> None:
        self._stopped.set()
