"""Gradio's upload folder kept under a disk budget, for a link that strangers use for weeks.

Gradio keeps every upload for as long as the process lives. Here a file is deleted once no live
session refers to it: a session holds the files it last asked about (`hold`), until it gives
other files, is cleared, expires or its tab closes (`release`); then they go at the next sweep.
Files nobody ever held go after a grace period (time to press Send after uploading). And when the
folder is over its budget the oldest unheld files go first, whatever their age:
before each upload is accepted, the oldest unheld files are deleted until it fits (`UploadBudget`),
and an upload that cannot fit is refused. Files Gradio itself keeps (the examples' copies, made
once at start) are never touched and do not count against the budget, which bounds what
visitors can make the server store. Vectors stay in the sessions' embedding caches; only files go.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import anyio

from pandagpt_demo.errors import Unavailable

log = logging.getLogger(__name__)

FULL = "The server's upload space is full right now; please try again in a few minutes."


@dataclass(frozen=True)
class StoredFile:
    path: Path
    size: int
    modified: float


class UploadStore:
    """The files under `root`, who holds which, and the deleting that keeps them within `budget` bytes."""

    def __init__(self, root: Path, budget: int, grace: float, keep: Callable[[], set[Path]] = set) -> None:
        """`grace`: seconds an unheld file survives when there is room; `keep`: files never to delete."""
        self.root = root.resolve()
        self.budget = budget
        self.grace = grace
        self._keep = keep
        self._held: dict[str, frozenset[Path]] = {}
        self._dropped: set[Path] = set()  # files some owner stopped holding: deleted at the next sweep unless held again
        self._lingering: dict[Path, float] = {}  # files of ended sessions: when their grace began (a reload may want them)
        self._reserved = 0  # bytes of uploads accepted and still arriving
        self._lock = threading.Lock()
        self.deleted = 0  # files deleted so far, for logs and tests

    def hold(self, owner: str, files: Iterable[Path | str]) -> None:
        """`owner` (a session, a request) now refers to exactly these files."""
        paths = frozenset(Path(f).resolve() for f in files)
        with self._lock:
            self._dropped |= self._held.get(owner, frozenset()) - paths
            self._held[owner] = paths

    def release(self, owner: str, linger: bool = False) -> None:
        """`owner` refers to no file any more: they go at the next sweep, or with `linger` (a session
        that ended: its tab may be reloaded) after the grace, counted from now."""
        with self._lock:
            files = self._held.pop(owner, frozenset())
            if linger:
                now = time.time()
                self._lingering.update(dict.fromkeys(files, now))
            else:
                self._dropped |= files

    def holds(self, path: Path | str) -> bool:
        with self._lock:
            return Path(path).resolve() in self._protected()

    def files(self) -> list[StoredFile]:
        """Every file under the folder, oldest first."""
        found = []
        for folder, _, names in os.walk(self.root):
            for name in names:
                path = Path(folder, name)
                try:
                    stat = path.stat()
                except FileNotFoundError:  # deleted meanwhile
                    continue
                found.append(StoredFile(path, stat.st_size, stat.st_mtime))
        return sorted(found, key=lambda f: f.modified)

    def usage(self) -> int:
        """Bytes counted against the budget: every file but those Gradio keeps."""
        with self._lock:
            return sum(f.size for f in self._counted())

    def _counted(self) -> list[StoredFile]:
        """The files the budget is for, oldest first (the caller holds the lock)."""
        kept = self._kept()
        return [f for f in self.files() if f.path not in kept]

    def sweep(self, room: int = 0) -> bool:
        """Delete unheld files past their grace, then the oldest unheld ones until `room` more bytes
        fit in the budget; whether they fit."""
        with self._lock:
            return self._sweep(room)

    def _sweep(self, room: int) -> bool:
        protected = self._protected()
        files = self._counted()
        used = sum(f.size for f in files) + self._reserved
        unheld = sum(f.size for f in files if f.path not in protected)
        fits = used - unheld + room <= self.budget  # if not even deleting every unheld file makes room, delete none for it
        now = time.time()
        for stored in files:
            if stored.path in protected:
                continue
            since = max(stored.modified, self._lingering.get(stored.path, 0.0))
            young = now - since <= self.grace and stored.path not in self._dropped
            if young and (used + room <= self.budget or not fits):
                continue
            if self._delete(stored.path):
                used -= stored.size
        self._dropped.clear()  # deleted, or held again (their next release drops them again)
        self._lingering = {path: since for path, since in self._lingering.items() if path.exists()}
        return used + room <= self.budget

    def _protected(self) -> set[Path]:
        """Files held by an owner or kept by Gradio (the caller holds the lock)."""
        held = set().union(*self._held.values()) if self._held else set()
        return held | self._kept()

    def _kept(self) -> set[Path]:
        return {Path(p).resolve() for p in self._keep()}

    def _delete(self, path: Path) -> bool:
        try:
            path.unlink()
        except FileNotFoundError:
            return True
        except OSError as error:
            log.warning("could not delete upload %s: %s", path, error)
            return False
        self.deleted += 1
        parent = path.parent
        if parent != self.root and parent.is_relative_to(self.root):
            try:
                parent.rmdir()  # Gradio puts each upload in its own folder; only an empty one goes
            except OSError:
                pass
        log.debug("deleted upload %s", path)
        return True

    def reserve(self, size: int) -> bool:
        """Make room for an incoming upload of `size` bytes and count it until `unreserve`; False if it cannot fit."""
        with self._lock:
            if not self._sweep(size):
                return False
            self._reserved += size
            return True

    def unreserve(self, size: int) -> None:
        with self._lock:
            self._reserved -= size

    def removed(self, path: Path | str) -> bool:
        """Whether `path` was an upload here that is gone (deleted for room, or after its grace)."""
        resolved = Path(path).resolve()
        return resolved.is_relative_to(self.root) and not resolved.exists()


class Reservation:
    """Room in the budget for bytes that arrive a piece at a time (a request body spooled to disk):
    reserved in steps as they come, so that the folder is swept once a step rather than once a piece,
    and given back at `release`, when the files it was for exist and count for themselves."""

    STEP = 16 * 2**20

    def __init__(self, store: UploadStore) -> None:
        self.store = store
        self.reserved = 0
        self.used = 0

    def room(self, size: int) -> None:
        """Count `size` more bytes; raises `Unavailable` (the folder is full) if they cannot fit."""
        self.used += size
        if self.used > self.reserved:
            step = max(self.STEP, self.used - self.reserved)
            if not self.store.reserve(step):
                raise Unavailable(FULL)
            self.reserved += step

    def release(self) -> None:
        self.store.unreserve(self.reserved)
        self.reserved = self.used = 0


class UploadBudget:
    """ASGI middleware in front of Gradio's upload route: room is made (or the upload refused, HTTP
    507) before a byte is written, and the upload counts against the budget while it arrives."""

    def __init__(self, app, store: UploadStore, limit: int) -> None:
        """`limit`: the largest upload accepted (Gradio's own max_file_size), assumed when a request gives no length."""
        self.app = app
        self.store = store
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].endswith("/gradio_api/upload"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        size = int(length) if length and length.isdigit() else self.limit
        if not await anyio.to_thread.run_sync(self.store.reserve, size):  # walking the folder: off the event loop
            log.warning("upload of %d bytes refused: the upload folder is at its budget", size)
            await _plain(send, 507, FULL)
            return
        try:
            await self.app(scope, receive, send)  # returns after Gradio's background move into the folder
        finally:
            self.store.unreserve(size)
            await anyio.to_thread.run_sync(self.store.sweep)


async def _plain(send, status: int, text: str) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
