"""Getting bytes: Hub files through `huggingface_hub`, plain URLs with HTTP Range resume.

Every failure becomes a `DownloadError` (`fetch_errors.py`) whose message is one paragraph for a
person: which file, which URL, what the server said, and what to do.

- Hub: `HfApi.model_info(files_metadata=True)` lists a repo with sizes and LFS sha256 sums (so the
  disk check happens before any byte is fetched); the Hub lists a gated repo's files to anyone, so a
  gated one is also asked `auth_check` (does this token have access?) before anything is planned; `hf_hub_download(local_dir=...)` fetches one file
  (progress bar, `HF_TOKEN`, `HF_ENDPOINT`, Xet when the repo uses it; a dropped connection is
  resumed from the byte reached with an HTTP Range request, within the run). The file appears under
  its name only when complete; the sha256 is then checked against the Hub's.
- URL (ImageBind's official file): HEAD for the size, GET with `Range: bytes=N-` into `NAME.part`,
  kept across runs, so an interrupted download continues where it stopped; renamed when the size and
  the sha256 are checked.
"""

from __future__ import annotations

import http.client
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from pandagpt_demo.errors import first_line
from pandagpt_demo.files import sha256_file

from .fetch_errors import DownloadError, disk_full, disk_full_error, explain_hub_error, explain_url_error, file_size, hub_endpoint

CHUNK = 1024**2
URL_RETRIES = 5  # consecutive failures without progress before a URL download gives up
RETRY_DELAY_S = 1.0
TIMEOUT_S = 60


@dataclass(frozen=True)
class RemoteFile:
    path: str  # inside the repo
    size: int
    sha256: str | None  # the LFS sum; None for small files kept in git


@dataclass(frozen=True)
class RepoListing:
    repo: str
    revision: str  # as asked (a branch, a tag or a commit)
    commit: str  # what it resolved to: every file is fetched at this commit
    files: dict[str, RemoteFile]

    @property
    def page(self) -> str:
        return f"{hub_endpoint()}/{self.repo}"

    def url(self, path: str) -> str:
        return f"{hub_endpoint()}/{self.repo}/resolve/{self.revision}/{path}"

    def origin(self) -> dict:
        return {"repo": self.repo, "revision": self.revision, "commit": self.commit}


def list_repo(repo: str, what: str, flag: str, revision: str = "main") -> RepoListing:
    """The repo's files with sizes and sums, at one commit, once this token is known to have access.

    The Hub lists a gated repo's files without a token and refuses only the download, so a gated repo
    is asked `auth_check` too: no access is found here, before any byte of any part is fetched.
    """
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub_endpoint())
    url = f"{hub_endpoint()}/api/models/{repo}/revision/{revision}"
    try:
        info = api.model_info(repo, revision=revision, files_metadata=True)
        if info.gated:
            url = f"{hub_endpoint()}/api/models/{repo}/auth-check"
            api.auth_check(repo)
    except Exception as error:
        raise explain_hub_error(error, what=f"{what} (the file list of {repo})", repo=repo, url=url, flag=flag) from error
    files = {
        sibling.rfilename: RemoteFile(
            sibling.rfilename,
            sibling.lfs.size if sibling.lfs else (sibling.size or 0),
            sibling.lfs.sha256 if sibling.lfs else None,
        )
        for sibling in info.siblings or []
    }
    return RepoListing(repo=repo, revision=revision, commit=info.sha or revision, files=files)


def fetch_hub_file(listing: RepoListing, path: str, local_dir: Path, what: str, flag: str, bar: type[tqdm] = tqdm) -> tuple[Path, dict]:
    """Download one listed file into `local_dir/path`; returns the path and its `{size, sha256}`. `bar`: the progress bar's class."""
    from huggingface_hub import hf_hub_download

    remote = listing.files.get(path)
    if remote is None:
        raise DownloadError(
            f"{what}: the file '{path}' is not in the Hub repository {listing.repo} at revision {listing.revision} "
            f"(looked for {listing.url(path)}). The repository's layout may have changed; see {listing.page}, or pass "
            f"another repository with {flag}."
        )
    try:
        local = Path(hf_hub_download(listing.repo, path, revision=listing.commit, local_dir=local_dir, endpoint=hub_endpoint(), tqdm_class=bar))
    except Exception as error:
        raise explain_hub_error(error, what=f"{what} ({path})", repo=listing.repo, url=listing.url(path), flag=flag) from error
    size = local.stat().st_size
    problem = None
    if size != remote.size:
        problem = f"it has {size:,} bytes, the Hub lists {remote.size:,}"
    digest = sha256_file(local, f"{listing.repo}/{path}")
    if problem is None and remote.sha256 is not None and digest != remote.sha256:
        problem = f"its sha256 is {digest}, the Hub lists {remote.sha256}"
    if problem:
        local.unlink(missing_ok=True)
        raise DownloadError(
            f"{what}: '{path}' from {listing.url(path)} arrived damaged ({problem}); it was deleted. Run the same command again to fetch it anew."
        )
    return local, {"size": size, "sha256": digest}


# --- plain URLs -------------------------------------------------------------------------------


def url_metadata(url: str, what: str, flag: str) -> tuple[int, str | None]:
    """The size (and ETag) a HEAD request reports for `url`."""
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            etag = response.headers.get("ETag")
    except Exception as error:
        raise explain_url_error(error, what=what, url=url, flag=flag) from error
    if length is None:
        raise DownloadError(f"{what}: {url} does not say its size (no Content-Length), so it cannot be checked or resumed.")
    return int(length), etag


def fetch_url(url: str, destination: Path, what: str, flag: str, part_dir: Path | None = None, bar: type[tqdm] = tqdm) -> dict:
    """Download `url` to `destination`, resuming from `NAME.part` (in `part_dir`) if an earlier run stopped.

    Returns `{size, sha256}`. The destination appears only once the size and the sum are known.
    """
    destination = Path(destination)
    part_dir = Path(part_dir or destination.parent)
    part_dir.mkdir(parents=True, exist_ok=True)
    part = part_dir / f"{destination.name}.part"
    etag_file = part_dir / f"{destination.name}.part.etag"
    size, etag = url_metadata(url, what, flag)
    if part.exists() and etag_file.exists() and etag and etag_file.read_text() != etag:
        part.unlink()  # the file on the server changed since the partial download: start over
    if part.exists() and part.stat().st_size > size:
        part.unlink()
    etag_file.write_text(etag or "")
    failures = 0
    with bar(total=size, initial=file_size(part), unit="B", unit_scale=True, unit_divisor=1024, desc=destination.name) as shown:
        while (have := file_size(part)) < size:
            try:
                _get_range(url, part, have, shown)
                failures = 0 if file_size(part) > have else failures + 1
                error = None
            except urllib.error.HTTPError as http_error:
                if http_error.code < 500:  # 4xx: retrying will not help
                    raise explain_url_error(http_error, what=what, url=url, flag=flag, kept=part) from http_error
                error = http_error
            except (urllib.error.URLError, http.client.HTTPException, OSError) as network_error:
                if disk_full(network_error):  # retrying cannot help: say so at once, keeping what arrived
                    raise disk_full_error(network_error, what=what, url=url, kept=part) from network_error
                error = network_error
            if error is not None:  # dropped connection or a 5xx: resume from where it stopped
                failures = 0 if file_size(part) > have else failures + 1
                if failures > URL_RETRIES:
                    raise explain_url_error(error, what=what, url=url, flag=flag, kept=part) from error
                shown.write(f"{destination.name}: interrupted at {file_size(part):,} of {size:,} bytes ({first_line(error)}); resuming")
                time.sleep(RETRY_DELAY_S)
            elif failures > URL_RETRIES:
                raise DownloadError(
                    f"Could not fetch {what}: {url} stopped sending data at {file_size(part):,} of {size:,} bytes. Run the same command again to resume."
                )
    if file_size(part) != size:
        raise DownloadError(f"{what}: {url} sent {file_size(part):,} bytes, more than the {size:,} it announced; '{part}' was kept for inspection.")
    digest = sha256_file(part, destination.name)
    destination.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, destination)
    etag_file.unlink(missing_ok=True)
    return {"size": size, "sha256": digest}


def _get_range(url: str, part: Path, start: int, bar: tqdm) -> None:
    """Append the bytes from `start` on to `part` (from 0 if the server ignores the Range)."""
    headers = {"Range": f"bytes={start}-"} if start else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S) as response:
        if start and response.status != 206:  # the server sent the whole file: start over
            part.unlink(missing_ok=True)
            bar.reset(total=bar.total)
            start = 0
        with open(part, "ab" if start else "wb") as out:
            while block := response.read(CHUNK):
                out.write(block)
                bar.update(len(block))
