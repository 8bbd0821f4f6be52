"""Which files a client may name: only what was uploaded to this server (or fetched for it from a
public URL by the one remote fetcher, public/fetcher.py, as `/v1` fetches), never any other path on the server."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

from gradio import processing_utils
from gradio import utils as gradio_utils
from gradio.data_classes import FileData
from gradio.route_utils import API_PREFIX
from gradio_client import utils as client_utils

from pandagpt_demo.app.public.fetcher import FetchPolicy, RemoteRefused, fetch_to
from pandagpt_demo.config import EXAMPLES_FILE
from pandagpt_demo.errors import BadInput, first_line
from pandagpt_demo.model.modalities import MediaError, Modality


def upload_folder() -> Path:
    """Gradio's upload folder (GRADIO_TEMP_DIR): where a file handed to a handler is, or is put."""
    return Path(gradio_utils.get_upload_folder()).resolve()


def _upload_roots() -> list[Path]:
    """Where a file handed to a handler may live: Gradio's upload folder and the examples."""
    return [upload_folder(), EXAMPLES_FILE.parent.resolve()]


def uploaded_path(modality: Modality, value: str | dict | FileData | None, policy: FetchPolicy) -> str | None:
    """A component's or an API client's file value as a local path, only if it was uploaded.

    A plain string reaches `/chat` unchecked by Gradio, so without this anyone could have the
    server read (and describe) any file it can open. A URL (what an MCP agent gives) is fetched by
    public/fetcher.py under `policy` (the server's, AnswerSettings.remote): public addresses only, within its
    time and size limits; a data URL is saved as Gradio saves one.
    """
    if value is None:
        return None
    if isinstance(value, FileData):
        path = value.path
    elif isinstance(value, dict) and isinstance(value.get("path"), str):
        path = value["path"]
    elif isinstance(value, str):
        path = value
    else:
        raise BadInput(f"The {modality.value} input must be a file (gradio_client.handle_file(...)), not {type(value).__name__}.")
    if path.startswith(("http://", "https://", "data:")):  # what an MCP agent gives: a URL, or the file as a data URL
        path = _own_file(path) or _fetched(modality, path, policy)
    resolved = Path(path).resolve()
    if not any(resolved.is_relative_to(root) for root in _upload_roots()):
        raise MediaError(modality, path, "it is a path on the server, not an uploaded file; send the file itself (gradio_client.handle_file)")
    if not resolved.exists():
        raise MediaError(modality, path, "it is no longer on the server (uploads nobody is using are deleted after a while); please attach it again")
    return path


def _own_file(url: str) -> str | None:
    """The upload behind a URL of a Gradio server's own file route, if it is one of this server's.

    `gradio upload-mcp` (Gradio's upload route for MCP clients) uploads a client's file and hands
    back `<app>/gradio_api/file=<path>`. Fetching that URL would leave and re-enter the server (and
    is refused on a private address, as Gradio refuses it for its own components); the path it names
    is already here when it is in the upload folder, under a directory name nobody can guess.
    """
    parts = urlsplit(url)
    _, route, encoded = parts.path.partition(f"{API_PREFIX}/file=")
    if not route or parts.query or parts.fragment:
        return None
    path = Path(unquote(encoded)).resolve()
    return str(path) if path.is_relative_to(_upload_roots()[0]) and path.is_file() else None


def _fetched(modality: Modality, url: str, policy: FetchPolicy) -> str:
    """A URL's file in the upload folder: a data URL saved as Gradio saves one, an http(s) URL fetched
    by the one remote fetcher (public addresses only) into a folder of its own under an unguessable name."""
    folder = gradio_utils.get_upload_folder()
    if url.startswith("data:"):
        try:
            return processing_utils.save_base64_to_cache(url, folder, f"{modality.value}.{client_utils.get_extension(url) or 'bin'}")
        except Exception as error:  # noqa: BLE001 - whatever went wrong, the data URL is the user's to fix
            raise MediaError(
                modality,
                f"{modality.value} URL",
                f"the data URL could not be read ({first_line(error)}); give a public http(s) URL or the file itself",
            ) from error
    Path(folder).mkdir(parents=True, exist_ok=True)
    target = Path(tempfile.mkdtemp(dir=folder))
    try:
        fetched = fetch_to(url, target / ".download", policy)
        path = target / fetched.name
        (target / ".download").replace(path)
    except RemoteRefused as error:
        shutil.rmtree(target, ignore_errors=True)
        raise MediaError(modality, f"{modality.value} URL", f"{error.url} could not be read: {error.reason}") from error
    except BaseException:  # TooLarge (the user's, as it is) or a fault of ours: nothing is left behind
        shutil.rmtree(target, ignore_errors=True)
        raise
    return str(path)


def original_name(value: object, path: str) -> str:
    """The name the client gave the file (Gradio keeps it as the upload's base name)."""
    name = value.orig_name if isinstance(value, FileData) else value.get("orig_name") if isinstance(value, dict) else None
    return name or Path(path).name
