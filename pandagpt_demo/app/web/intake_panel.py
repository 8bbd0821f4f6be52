"""The page's "What ImageBind took in" panel: for every file in the strip, a picture of what the
encoder read from it (the crop, the frames, the heard clips, the window) and one plain sentence.

A file whose loss is large (a long recording heard for seconds, a wide photo's sides, a video's
own sound unused) is said once, as a notice, when it is attached. The figures come from
`Answering.intakes` (one table for every endpoint); the pictures are PNGs beside the previews.
"""

from __future__ import annotations

import logging

import gradio as gr

from pandagpt_demo.app.conversation.chatlog import Attachment
from pandagpt_demo.app.conversation.session import ChatSession
from pandagpt_demo.errors import UserError
from pandagpt_demo.model.intake import Intake

from .handlers import PageHandlers
from .intake_pictures import save_picture

log = logging.getLogger(__name__)

NOTHING = "*Attach a file to see what ImageBind takes in from it.*"


class IntakePanel:
    """Shows, for one page, what ImageBind took in from each file of a session's strip."""

    def __init__(self, app: PageHandlers) -> None:
        self.app = app

    def _intake(self, attachment: Attachment, session: ChatSession) -> Intake:
        target = self.app.previews.intake_picture(attachment)
        draw = None if target.exists() else lambda found: save_picture(found, target)
        return self.app.intake(attachment, session, draw)

    def show(self, session: ChatSession, request: gr.Request) -> tuple[list[tuple[str, str]], str]:
        """The gallery's pictures (each captioned with its file and figure) and the sentences, for
        the files in the message box and in use (a file just attached whose loss is large is said
        once as a notice too: `PageHandlers.intake`)."""
        pictures, lines = [], []
        for attachment in [a for a in session.pending + session.in_use if a.path is not None]:
            try:
                intake = self._intake(attachment, session)
            except UserError as error:
                lines.append(f"**{attachment.name}**: {error}")
                continue
            pictures.append((str(self.app.previews.intake_picture(attachment)), f"{attachment.name}: {intake.short}"))
            lines.append(f"**{attachment.name}** ({attachment.kind.value}): {intake.summary}")
        self.app.hold(self.app.guarded(request, session), session)  # the pictures just drawn are kept with the files
        return pictures, "\n\n".join(lines) or NOTHING
