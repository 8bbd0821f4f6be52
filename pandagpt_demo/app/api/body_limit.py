"""A ceiling on every request body the server holds in memory, for the routes that have none of their own.

Gradio's routes (its queue, its API, the MCP server) read a JSON body whole, and nothing bounds it:
one client could send gigabytes. Their legitimate bodies are small (files are uploaded apart and
named by path), the largest being an MCP agent's file as a data URL; so anything past one such
file is refused with 413, by its declared length before a byte is read, or as soon as what has
arrived passes it. Two routes are left to their own limits: Gradio's upload route (multipart,
spooled to disk, each file within --max-file-mb, under the upload budget) and `/v1` (its body
spooled as it arrives, within --max-request-mb: api/openai/body.py).
"""

from __future__ import annotations

from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

OWN_LIMITS = ("/v1/", "/gradio_api/upload")  # path parts of the routes that bound their bodies themselves


def data_url_bytes(file_bytes: int) -> int:
    """The body that carries one file of `file_bytes` as a base64 data URL, with room around it."""
    return int(file_bytes * 4 / 3) + 2**20


class BodyLimit:
    """ASGI middleware: Starlette's body limit on every HTTP route but those with their own."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limited = RequestBodyLimitMiddleware(app, limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not any(part in scope["path"] for part in OWN_LIMITS):
            await self.limited(scope, receive, send)
        else:
            await self.app(scope, receive, send)
