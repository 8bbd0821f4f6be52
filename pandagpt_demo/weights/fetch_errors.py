"""What went wrong fetching weights, said to a person: which file, which URL, what the server said, what to do.

Two kinds, because `download` tries a part's sources in order:

- `SourceUnusable`: this source cannot serve the part (the repo is missing or private, gated without
  access, disabled, or lacks the file); the next candidate may, so `download` moves on to it.
- `DownloadError` (the base): every source would fail the same way (the network is down, the Hub
  rate-limits us, the token itself is invalid, the disk is full, Xet's transfer broke); `download`
  stops and says so.

Each case is recognised by what `huggingface_hub` and `urllib` raise for it (exception types, HTTP
status, the Hub's `X-Error-Message`), never by guessing from a repo name.
"""

from __future__ import annotations

import errno
import os
import socket
import urllib.error
from pathlib import Path
from urllib.parse import urlsplit

from pandagpt_demo.errors import PandaGPTError, first_line

DISABLED_MESSAGE = "Access to this resource is disabled."  # the Hub's X-Error-Message for a disabled repo
INVALID_TOKEN_MESSAGE = "Invalid credentials in Authorization header"  # ... for a token it does not know
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_NETWORK_ADVICE = (
    "Check the network connection (behind a proxy, set HTTPS_PROXY; for a Hub mirror, set HF_ENDPOINT). "
    "Nothing half-written was put in place; run the same command again to continue."
)


class DownloadError(PandaGPTError):
    """A download that could not be done; the message explains it to a person in one paragraph."""


class SourceUnusable(DownloadError):
    """This source cannot serve the part, whatever is retried; another candidate may. `reason` is short, for the plan."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def hub_endpoint() -> str:
    """`HF_ENDPOINT` as set now (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _token_available() -> bool:
    from huggingface_hub import get_token

    return get_token() is not None


def explain_hub_error(error: BaseException, *, what: str, repo: str, url: str, flag: str) -> DownloadError:
    """The `DownloadError` (or `SourceUnusable`) that says what `error` from huggingface_hub means here."""
    from huggingface_hub.errors import (
        DisabledRepoError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
        XetDownloadError,
    )

    page = f"{hub_endpoint()}/{repo}"
    status = getattr(getattr(error, "response", None), "status_code", None)
    said = f"HTTP {status}" if status else type(error).__name__
    server = getattr(error, "server_message", None) or ""
    failed = f"Could not fetch {what} from {url}"
    another = f"If the repository id is wrong, pass another with {flag}."
    if disk_full(error):
        return disk_full_error(error, what=what, url=url)
    if isinstance(error, DisabledRepoError) or DISABLED_MESSAGE in server:
        return SourceUnusable(
            f"{failed}: the Hub has disabled the repository {repo} ({said}: '{DISABLED_MESSAGE}'). No token or login "
            f"gives access to a disabled repository; use another source. {another}",
            "disabled on the Hub",
        )
    if status == 401 and INVALID_TOKEN_MESSAGE in server:
        return DownloadError(
            f"{failed}: the Hub refused the token that was sent ({said}: '{INVALID_TOKEN_MESSAGE}'); it is mistyped, "
            "expired or revoked. Create a read token at https://huggingface.co/settings/tokens and `export HF_TOKEN=hf_...` "
            "(or run `hf auth login`), or unset HF_TOKEN to fetch public repositories without one."
        )
    if isinstance(error, GatedRepoError):
        if _token_available():
            advice = (
                f"A token was sent (HF_TOKEN or your saved `hf auth login`) but its account has no access: open {page}, "
                "accept its terms with that account (some gated repos wait for the owners' approval), and check that "
                "the token has read access."
            )
        else:
            advice = (
                f"To get access, open {page}, log in and accept its terms, create a read token at "
                "https://huggingface.co/settings/tokens, then `export HF_TOKEN=hf_...` (or run `hf auth login`) and run "
                "the same command again."
            )
        return SourceUnusable(
            f"{failed}: the repository {repo} is gated and this account has no access ({said}). {advice}", f"gated, no access ({said})"
        )
    if isinstance(error, RepositoryNotFoundError) or status in (401, 403):
        if _token_available():
            cause = f"the Hub answered {said}: the repository {repo} does not exist, or it is private and the token sent does not give access"
        else:
            cause = (
                f"the Hub answered {said}: the repository {repo} does not exist, or it is private (no token was sent; "
                "for a private repo of yours, `export HF_TOKEN=hf_...` or run `hf auth login`)"
            )
        return SourceUnusable(f"{failed}: {cause}. {another}", f"not found or private ({said})")
    if isinstance(error, RevisionNotFoundError):
        return SourceUnusable(f"{failed}: the repository {repo} has no such revision ({said}).", "no such revision")
    if isinstance(error, RemoteEntryNotFoundError) or status == 404:
        return SourceUnusable(
            f"{failed}: the Hub answered {said}, the file is not in {repo}. The repository's layout may have changed; "
            f"see {page}, or pass another repository with {flag}.",
            f"file missing ({said})",
        )
    if status == 429:
        wait = (getattr(error, "response", None).headers.get("Retry-After") or "").strip()
        return DownloadError(
            f"{failed}: the Hub is rate-limiting these requests (HTTP 429{f', retry after {wait} s' if wait else ''}). "
            "Wait a few minutes and run the same command again; requests with a token (`hf auth login`) get higher "
            "limits. Parts already in place are kept."
        )
    if isinstance(error, OfflineModeIsEnabled):
        return DownloadError(f"{failed}: HF_HUB_OFFLINE is set, so huggingface_hub does not go online. Unset it and run again.")
    if isinstance(error, XetDownloadError) or raised_by_xet(error):
        return DownloadError(
            f"{failed}: the file is stored with Xet, and Xet's transfer failed ({first_line(error)}). Run the same command "
            "again with Xet turned off, which fetches the same file over plain HTTPS: `HF_HUB_DISABLE_XET=1 python -m "
            "pandagpt_demo.weights download ...`. Parts already in place are kept."
        )
    if isinstance(error, HfHubHTTPError) and status:
        return DownloadError(f"{failed}: the Hub answered {said} ({first_line(error)}). Try again later; {_NETWORK_ADVICE}")
    if isinstance(error, (LocalEntryNotFoundError, OSError)) or _is_network_error(error):
        host = urlsplit(url).netloc
        return DownloadError(f"{failed}: {host} could not be reached ({_root_cause(error)}). {_NETWORK_ADVICE}")
    return DownloadError(f"{failed}: {type(error).__name__}: {first_line(error)}")


def explain_url_error(error: BaseException, *, what: str, url: str, flag: str, kept: Path | None = None) -> DownloadError:
    """The same for a plain URL (ImageBind's official file): 4xx mean this source is unusable."""
    resume = f" The {file_size(kept):,} bytes received are kept in '{kept}'; the next run continues from there." if kept and file_size(kept) else ""
    if disk_full(error):
        return disk_full_error(error, what=what, url=url, kept=kept)
    if isinstance(error, urllib.error.HTTPError) and error.code < 500:
        hint = {
            401: "the server wants credentials",
            403: "the server refuses access (the file may have moved, or your network blocks it)",
            404: "there is no file at that address any more",
        }.get(error.code, "the server would not send it")
        return SourceUnusable(
            f"Could not fetch {what} from {url}: HTTP {error.code} {error.reason} ({hint}). Use a copy from elsewhere "
            f"with {flag}, then run the same command again.{resume}",
            f"HTTP {error.code}",
        )
    if isinstance(error, urllib.error.HTTPError):
        return DownloadError(
            f"Could not fetch {what} from {url}: the server kept answering HTTP {error.code} {error.reason}. Try again "
            f"later, or use a copy from elsewhere with {flag}.{resume}"
        )
    return DownloadError(
        f"Could not fetch {what} from {url}: {urlsplit(url).netloc} could not be reached or stopped answering "
        f"({_root_cause(error)}). {_NETWORK_ADVICE}{resume}"
    )


def disk_full(error: BaseException) -> bool:
    """Whether the disk (or a quota) filled up somewhere in `error`'s chain."""
    return any(isinstance(e, OSError) and e.errno in _DISK_FULL for e in _chain(error))


def disk_full_error(error: BaseException, *, what: str, url: str, kept: Path | None = None) -> DownloadError:
    cause = next(e for e in _chain(error) if isinstance(e, OSError) and e.errno in _DISK_FULL)
    where = f" ('{cause.filename}')" if getattr(cause, "filename", None) else ""
    partial = f" The {file_size(kept):,} bytes received are kept in '{kept}'." if kept and file_size(kept) else ""
    return DownloadError(
        f"Could not fetch {what} from {url}: the disk filled up while writing it{where} ({os.strerror(cause.errno)}). "
        f"Parts already in place are kept.{partial} Free some space (or choose a folder on a larger disk) and run the "
        "same command again: it continues from there."
    )


def raised_by_xet(error: BaseException) -> bool:
    """Whether `error` came out of huggingface_hub's Xet transfer (`hf_xet` raises plain RuntimeErrors)."""
    for link in _chain(error):
        if type(link).__module__.startswith("hf_xet"):
            return True
        frame = link.__traceback__
        while frame is not None:
            if frame.tb_frame.f_code.co_name == "xet_get" or frame.tb_frame.f_globals.get("__name__", "").startswith("hf_xet"):
                return True
            frame = frame.tb_next
    return False


def file_size(path: Path | None) -> int:
    """The bytes a (partial) file holds so far; 0 if there is none."""
    return path.stat().st_size if path is not None and path.exists() else 0


def _is_network_error(error: BaseException) -> bool:
    names = {type(e).__name__ for e in _chain(error)}
    return bool(names & {"ConnectError", "ConnectTimeout", "ReadTimeout", "RemoteProtocolError", "NetworkError", "TimeoutException"}) or any(
        isinstance(e, (socket.error, urllib.error.URLError)) for e in _chain(error)
    )


def _chain(error: BaseException):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _root_cause(error: BaseException) -> str:
    last = list(_chain(error))[-1]
    reason = getattr(last, "reason", None)
    return first_line(reason if isinstance(reason, BaseException) else last) or type(last).__name__
