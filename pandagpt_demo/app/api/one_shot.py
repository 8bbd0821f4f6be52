"""What every Gradio endpoint for programs (`/chat`, `/imagebind_view`, and their MCP tools) does
around its work: a one-shot session counted by endpoint, errors as Gradio shows them, files released."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import gradio as gr

from pandagpt_demo.app.answering.core import Answering
from pandagpt_demo.errors import UserError, internal_error

FILES = (
    "Each file argument is a URL: an http(s) URL of a public host, or the file itself as a data URL "
    "(data:<media type>;base64,...). An MCP client holding a local file can run Gradio's upload route for MCP clients beside "
    "this server, `gradio upload-mcp <this app's URL> <folder>`, and pass the URL its upload_file_to_gradio tool returns."
)


def tool_description(function: Callable) -> str:
    """An MCP tool's description: the first paragraph of its docstring, and how its files arrive."""
    return f"{(inspect.getdoc(function) or '').split(chr(10) * 2)[0]} {FILES}"


@contextmanager
def one_shot(core: Answering, endpoint: str) -> Iterator[str]:
    """A call's owner id (its files are released when the call ends), counted under `endpoint`; a
    user error reaches the client as it is, without a traceback; an internal fault as an id (logged once)."""
    owner = f"api-{uuid.uuid4().hex}"
    try:
        with core.counted(endpoint, owner):
            yield owner
    except UserError as error:
        raise gr.Error(str(error), print_exception=False) from error
    except gr.Error:  # ZeroGPU's own words for the visitor (their quota, a task it aborted)
        raise
    except Exception as error:
        raise gr.Error(internal_error(error), print_exception=False) from error
    finally:
        core.house.release(owner)
