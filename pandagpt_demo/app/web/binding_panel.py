"""The page's handlers for ImageBind's view and the answer tables ("Answer each", "Blend two"); page.py
lays them out. Each works on the tab's own `ChatSession` as the chat's handlers do (handlers.py): the
files it uses are held while it runs and it is refused while the app drains. A user's mistake is a
warning and changes nothing shown; the conversation itself is never changed by them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import gradio as gr

from pandagpt_demo.app.conversation.each import Row, answer_blend, answer_each
from pandagpt_demo.app.conversation.session import ChatSession, Model
from pandagpt_demo.app.conversation.view import imagebind_view
from pandagpt_demo.config import SamplingParams
from pandagpt_demo.errors import BadInput, UserError, internal_error
from pandagpt_demo.serving.engine import Engine

from .binding_html import answer_table, heat_map, label_bars
from .handlers import PageHandlers, session_key

# (model, engine, max_new_tokens, cancel) -> the rows as they change
Rows = Callable[[Model, Engine, int, threading.Event], Iterator[list[Row]]]


class BindingPanel:
    """The handlers of one page, beside its chat's (`page`)."""

    def __init__(self, page: PageHandlers) -> None:
        self.page = page
        self.core = page.core

    def look(self, labels: str | None, session: ChatSession, request: gr.Request) -> tuple:
        """ImageBind's view of the files in use: the heat map, and the labels' bars if labels are typed."""
        try:
            with self.core.counted("page_view", session_key(request)):
                key = self.page.enter(request, session)
                model, _ = self.core.served()
                with self.core.house.answering(key, self.page.hold(key, session)):
                    view = imagebind_view(model, session, labels or "", self.core.labels)
        except UserError as error:
            gr.Warning(str(error))
            return gr.skip(), gr.skip()
        except gr.Error:  # ZeroGPU's own words for the visitor (their quota, a task it aborted)
            raise
        except Exception as error:
            raise gr.Error(internal_error(error), print_exception=False) from error  # logged once, by internal_error
        return heat_map(view), label_bars(view)

    def pair_choices(self, session: ChatSession, first: int | None, second: int | None) -> tuple:
        """The files in use as choices for A and B of a blend; a choice still valid is kept."""
        choices = [(f"{index + 1} · {a.name} ({a.kind.value})", index) for index, a in enumerate(session.in_use)]

        def pick(current: int | None, default: int) -> int | None:
            if current is not None and current < len(choices):
                return current
            return default if default < len(choices) else None

        return gr.Dropdown(choices=choices, value=pick(first, 0)), gr.Dropdown(choices=choices, value=pick(second, 1))

    def answer_each(self, max_new_tokens: float, session: ChatSession, request: gr.Request) -> Iterator[str]:
        """The last question answered with each file in use alone and with their weighted sum, streamed as a table."""

        def rows(model: Model, engine: Engine, tokens: int, cancel: threading.Event) -> Iterator[list[Row]]:
            return answer_each(session, model, engine, tokens, cancel)

        yield from self._stream("page_each", rows, max_new_tokens, session, request)

    def blend(
        self, first: int | None, second: int | None, steps: float, max_new_tokens: float, session: ChatSession, request: gr.Request
    ) -> Iterator[str]:
        """The last question answered from blends of files A and B in use, streamed as a row."""

        def rows(model: Model, engine: Engine, tokens: int, cancel: threading.Event) -> Iterator[list[Row]]:
            if not isinstance(steps, (int, float)) or steps != int(steps):
                raise BadInput(f"The blend's steps must be a whole number, not {steps!r}.")
            pair = tuple(-1 if index is None else int(index) for index in (first, second))  # none chosen: refused by answer_blend, by name
            return answer_blend(session, model, engine, tokens, pair, int(steps), cancel)

        yield from self._stream("page_blend", rows, max_new_tokens, session, request)

    def _stream(self, endpoint: str, rows: Rows, max_new_tokens: float, session: ChatSession, request: gr.Request) -> Iterator[str]:
        """Run `rows`, counted under `endpoint`, and stream them as a table. Stop (or leaving the page)
        closes this generator, which ends every row still decoding."""
        cancel = threading.Event()
        try:
            with self.core.counted(endpoint, session_key(request)):
                key = self.page.enter(request, session)
                tokens = self.core.settings.params(max_new_tokens, SamplingParams.top_p, 0.0).max_new_tokens
                model, engine = self.core.served()
                with self.core.house.answering(key, self.page.hold(key, session)):
                    for changed in rows(model, engine, tokens, cancel):
                        yield answer_table(changed)
        except UserError as error:
            gr.Warning(str(error))
            yield gr.skip()
        except gr.Error:  # ZeroGPU's own words for the visitor (their quota, a task it aborted)
            raise
        except Exception as error:
            raise gr.Error(internal_error(error), print_exception=False) from error
        finally:
            cancel.set()
