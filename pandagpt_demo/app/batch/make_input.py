"""`python -m pandagpt_demo.batch make`: a batch's input written for the user — one request per file
(given as files, folders or globs) with the same question, or one per row of a CSV of
`file,question` — each file's kind guessed as on the page, greedy unless told otherwise, so that
reruns are comparable. Paths are written relative to the input file's folder."""

from __future__ import annotations

import csv
import glob
import json
import os
from pathlib import Path

from pandagpt_demo.errors import BadSetting
from pandagpt_demo.model.kinds import guess_kind
from pandagpt_demo.model.modalities import Modality


def expand(given: list[str]) -> list[Path]:
    """Files, the media files of folders (sorted, not recursing; others are passed over) and the
    matches of globs, in order, each once."""
    found: list[Path] = []
    for item in given:
        path = Path(item)
        matches = sorted(Path(p) for p in glob.glob(item)) if glob.has_magic(item) else [path]
        for match in matches:
            children = sorted(p for p in match.iterdir() if p.is_file() and guess_kind(p)) if match.is_dir() else [match]
            found.extend(p for p in children if p not in found)
    return found


def part_for(path: Path, relative_to: Path) -> dict:
    """The media part naming this file (path relative to the input's folder), as its kind is guessed."""
    kind = guess_kind(path)
    if kind is None:
        raise BadSetting(f"'{path}' is not a kind of file PandaGPT takes.")
    where = os.path.relpath(path.resolve(), relative_to.resolve())
    if kind is Modality.IMAGE:
        return {"type": "image_url", "image_url": {"url": where}}
    if kind is Modality.VIDEO:
        return {"type": "video_url", "video_url": {"url": where}}
    return {"type": "file", "file": {"file_data": where, "filename": path.name}, "modality": kind.value}


def request_line(custom_id: str, model: str, question: str, part: dict, max_tokens: int, temperature: float) -> dict:
    """One line of OpenAI's batch input format."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": [{"type": "text", "text": question}, part]}],
        "max_tokens": max_tokens,
        "temperature": temperature,
    }
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def write_input(
    output: Path, model: str, files: list[str], question: str | None, table: Path | None, max_tokens: int, temperature: float = 0.0
) -> int:
    """Write the input file; how many requests it holds."""
    if table is not None:
        with table.open(newline="", encoding="utf-8-sig") as handle:
            rows = [
                (Path(row["file"]) if Path(row["file"]).is_absolute() else table.parent / row["file"], row["question"])
                for row in csv.DictReader(handle)
            ]
    elif question:
        rows = [(path, question) for path in expand(files)]
    else:
        raise BadSetting("Give --question with the files, or --csv with file and question columns.")
    lines = [request_line(f"request-{n}", model, q, part_for(path, output.parent), max_tokens, temperature) for n, (path, q) in enumerate(rows, 1)]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    return len(lines)
