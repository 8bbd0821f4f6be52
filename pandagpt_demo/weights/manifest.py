"""`manifest.json`, written by `download` next to the files it fetched: where each part came from.

One entry per component (`imagebind_huge.pth`, `vicuna_7b_v0`, `pandagpt_7b`, ...):

    {"source": "repo:openllmplayground/vicuna_7b_v0",        # how to compare with a new request
     "flags": ["--vicuna-repo", "openllmplayground/vicuna_7b_v0"],  # to repeat the download
     "origins": [{"repo": ..., "revision": "main", "commit": "<sha>"} | {"url": ...} | {"folder": ...}],
     "files": {"vicuna_7b_v0/config.json": {"size": 507, "sha256": "..."}, ...},
     "fetched_at": "2024-01-01T00:00:00+00:00"}

`check` compares sizes with it (cheap) and, with `--hash`, sha256 sums.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from pandagpt_demo.files import sha256_file

MANIFEST_NAME = "manifest.json"
FORMAT = 1


def manifest_path(root: Path) -> Path:
    return Path(root) / MANIFEST_NAME


def read_manifest(root: Path) -> dict:
    """The manifest of a checkpoints folder; an empty one when there is none or it is unreadable."""
    try:
        data = json.loads(manifest_path(root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"format": FORMAT, "components": {}}
    if not isinstance(data, dict) or not isinstance(data.get("components"), dict):
        return {"format": FORMAT, "components": {}}
    return data


def record_component(root: Path, name: str, *, source: str, flags: list[str], origins: list[dict], files: dict[str, dict]) -> None:
    """Replace one component's entry, writing the manifest atomically (temp file, then rename)."""
    data = read_manifest(root)
    data["format"] = FORMAT
    data["components"][name] = {
        "source": source,
        "flags": flags,
        "origins": origins,
        "files": files,
        "fetched_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    path = manifest_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def file_record(path: Path, sha256: str | None = None) -> dict:
    """`{"size", "sha256"}` for a file (hashing it unless the sum is already known)."""
    return {"size": Path(path).stat().st_size, "sha256": sha256 or sha256_file(path)}
