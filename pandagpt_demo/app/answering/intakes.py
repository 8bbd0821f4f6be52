"""What ImageBind takes in from each file (model/intake.py), found once per content and kind and
shared by every endpoint: the page's panel, `/imagebind_intake` and its MCP tool, and the "Used:"
line of answers.

Finding it decodes the file (a video's ten frames, a sound's waveform) but never runs ImageBind.
The figures are kept, in a bounded table; the pixels and samples a picture is drawn from are not
(ten full-size frames of a video are tens of MB): whoever draws gets them once, as it is found.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace

from pandagpt_demo.app.conversation.chatlog import Attachment
from pandagpt_demo.model.intake import Intake, took_in
from pandagpt_demo.model.modalities import MediaError, Modality

KEPT = 1024  # figures of this many (content, kind) pairs; a few hundred bytes each


class Intakes:
    """The intake of each (content, kind), found at most once while it stays in the table."""

    def __init__(self, kept: int = KEPT) -> None:
        self.kept = kept
        self._found: OrderedDict[tuple[str, Modality], Intake] = OrderedDict()
        self._lock = threading.Lock()

    def of(self, attachment: Attachment, draw: Callable[[Intake], None] | None = None) -> Intake:
        """What ImageBind takes in from this file; with `draw`, found again (its material is not
        kept) and handed to `draw` first. Also noted on the attachment (`took_in`) for the answers'
        "Used:" line. A file the loader refuses raises its MediaError."""
        if attachment.path is None:
            raise MediaError(attachment.kind, attachment.name, "it is no longer on the server; please attach it again")
        key = (attachment.sha256, attachment.kind)
        with self._lock:
            intake = self._found.get(key)
            if intake is not None:
                self._found.move_to_end(key)
        if intake is None or draw is not None:
            found = took_in(attachment.kind, attachment.path)
            if draw is not None:
                draw(found)
            intake = replace(found, material=None)
            with self._lock:
                self._found[key] = intake
                while len(self._found) > self.kept:
                    self._found.popitem(last=False)
        attachment.took_in = intake.short
        return intake
