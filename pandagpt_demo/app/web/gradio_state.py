"""Gradio's per-session state kept in bounds, for a demo that serves strangers for weeks.

Two things in Gradio 6.31 grow with traffic and are never given back:
- Every property update of a component (`gr.skip()` and `gr.update(...)` are ones) stores a new
  instance of it in the session's config, and that instance carries a new `_id`; the next event
  that reads the component registers the instance again under that new id. So each session's
  config gains one component per such answer (the page's message box, on every /send), never
  pruned. `keep_component_ids` makes the stored instance keep the id it is stored under.
- A session's state (a copy of the whole page's config) lives until 10,000 newer sessions push it
  out, long after its tab has gone. `forget_ended_sessions` drops it when the demo ends the
  session (idle past its TTL, or its tab closed); a tab that comes back starts a fresh one, as
  the session registry already tells it.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
from gradio.blocks import Block
from gradio.state_holder import SessionState

from pandagpt_demo.app.public.housekeeping import Housekeeping

_KEPT = "_pandagpt_keeps_ids"  # marks the patched method: applying twice changes nothing


def keep_component_ids() -> None:
    """Store an updated component under the id it replaces, not under the fresh id its constructor drew."""
    original = SessionState.__setitem__
    if getattr(original, _KEPT, False):
        return

    def setitem(self: SessionState, key: int, value: Any) -> None:
        replaced = self.blocks_config.blocks.get(key)
        if isinstance(value, Block) and type(value) is type(replaced) and value._id != key:  # an update's new instance
            value._id = key
        original(self, key, value)

    setattr(setitem, _KEPT, True)
    SessionState.__setitem__ = setitem  # type: ignore[method-assign]


def forget_ended_sessions(demo: gr.Blocks, house: Housekeeping) -> None:
    """When `house` ends a session, Gradio's state for it goes too (its holder exists once the demo is launched)."""

    def forget(key: str) -> None:
        holder = getattr(demo, "state_holder", None)
        if holder is None:
            return
        with holder.lock:
            holder.session_data.pop(key, None)
            holder.time_last_used.pop(key, None)

    house.on_session_end(forget)
