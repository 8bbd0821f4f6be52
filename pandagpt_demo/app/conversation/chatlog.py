"""A chat as data: its messages, the files attached to each, every version of every answer and the
files and weights each version was given; and its plain-JSON record, which the page keeps in the
browser (to survive a reload) and exports (to resume later).

A record holds text, settings, and of each file its name, kind, weight and sha256 only: files stay
on the server while the session lives, and a resumed chat asks for a missing file again by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pandagpt_demo.errors import BadInput
from pandagpt_demo.files import sha256_file
from pandagpt_demo.model.modalities import MediaError, Modality, checked_file, has_sound_track

RECORD_FORMAT = "pandagpt-demo chat"
RECORD_VERSION = 1


@dataclass(eq=False)
class Attachment:
    """One file the user gave: what it is taken as, and its multimodal-arithmetic weight. `path` is
    None for a file known only from a record (a reload, an import) and not on the server now. A
    video's sound track is an audio attachment of the video's own file (`sound_of_video`), read by
    the audio loader from the decoded track. `took_in`: what ImageBind takes in from it, in a few
    words ("6 s of 4 min heard"), once someone has asked (model/intake.py)."""

    name: str
    kind: Modality
    sha256: str
    path: Path | None = None
    weight: float = 1.0
    sound_of_video: bool = False
    took_in: str = ""

    @classmethod
    def of(cls, path: str | Path, kind: Modality, name: str | None = None, weight: float = 1.0) -> Attachment:
        """The file at `path` taken as `kind`; a MediaError names it if it cannot be read."""
        kind = Modality(kind)
        path = checked_file(kind, path)
        try:
            digest = sha256_file(path)
        except OSError as error:
            raise MediaError(kind, path, f"it cannot be read ({error.strerror or error})") from error
        return cls(name or path.name, kind, digest, path, float(weight))

    def label(self) -> str:
        return f"{self.name} ({self.kind.value} ×{self.weight:g})"

    def sound_track(self, weight: float = 1.0) -> Attachment:
        """This video's sound as an input of its own; a MediaError if it has none."""
        if self.kind is not Modality.VIDEO or self.path is None or not has_sound_track(self.path):
            raise MediaError(self.kind, self.path or self.name, "it has no sound track to hear")
        return Attachment(f"{self.name} (its sound)", Modality.AUDIO, self.sha256, self.path, float(weight), sound_of_video=True)


@dataclass(frozen=True)
class Used:
    """A file and weight as one answer was given them."""

    name: str
    kind: Modality
    weight: float
    sha256: str
    took_in: str = ""  # what ImageBind took in from it, in a few words, when known

    @classmethod
    def of(cls, attachment: Attachment) -> Used:
        return cls(attachment.name, attachment.kind, attachment.weight, attachment.sha256, attachment.took_in)

    def caption(self) -> str:
        took = f"; {self.took_in}" if self.took_in else ""
        return f"{self.name} ({self.kind.value} ×{self.weight:g}{took})"


@dataclass
class Version:
    text: str
    used: tuple[Used, ...] = ()

    def caption(self) -> str:
        """What this answer was about, shown under it."""
        if not self.used:
            return "text only"
        return " + ".join(u.caption() for u in self.used)


@dataclass
class Exchange:
    """A question, the files attached to it, and the versions of its answer (`shown` is the one
    the conversation goes on from)."""

    question: str
    attached: list[Attachment] = field(default_factory=list)
    versions: list[Version] = field(default_factory=list)
    shown: int = 0

    @property
    def answer(self) -> Version | None:
        return self.versions[self.shown] if self.versions else None

    def add(self, version: Version) -> None:
        self.versions.append(version)
        self.shown = len(self.versions) - 1


# --- the record -----------------------------------------------------------------------------


def _file_record(attachment: Attachment) -> dict:
    record = {"name": attachment.name, "kind": attachment.kind.value, "sha256": attachment.sha256, "weight": attachment.weight}
    return record | ({"sound_of_video": True} if attachment.sound_of_video else {})


def _used_record(used: Used) -> dict:
    record = {"name": used.name, "kind": used.kind.value, "sha256": used.sha256, "weight": used.weight}
    return record | ({"took_in": used.took_in} if used.took_in else {})


def record_of(exchanges: list[Exchange], in_use: list[Attachment], settings: dict) -> dict:
    """The chat as plain JSON data. Attachments are numbered by their place in `files` so that one
    file attached once and in use is written once."""
    files: list[Attachment] = []
    for attachment in [a for e in exchanges for a in e.attached] + in_use:
        if attachment not in files:
            files.append(attachment)
    return {
        "format": RECORD_FORMAT,
        "version": RECORD_VERSION,
        "settings": dict(settings),
        "files": [_file_record(a) for a in files],
        "in_use": [files.index(a) for a in in_use],
        "messages": [
            {
                "question": e.question,
                "attached": [files.index(a) for a in e.attached],
                "answers": [{"text": v.text, "used": [_used_record(u) for u in v.used]} for v in e.versions],
                "shown": e.shown,
            }
            for e in exchanges
        ],
    }


def _field(data: object, key: str, kind: type | tuple[type, ...], where: str) -> object:
    if not isinstance(data, dict) or not isinstance(data.get(key), kind):
        raise BadInput(f"This chat file is not one this demo exported: {where} has no valid '{key}'.")
    return data[key]


def _kind(value: object, where: str) -> Modality:
    try:
        return Modality(value)
    except ValueError:
        raise BadInput(f"This chat file is not one this demo exported: {where} has an unknown kind {value!r}.") from None


def _attachment(data: object, where: str) -> Attachment:
    return Attachment(
        name=str(_field(data, "name", str, where)),
        kind=_kind(_field(data, "kind", str, where), where),
        sha256=str(_field(data, "sha256", str, where)),
        weight=float(_field(data, "weight", (int, float), where)),
        sound_of_video=data.get("sound_of_video") is True,
    )


def _used(data: object, where: str) -> Used:
    a = _attachment(data, where)
    took_in = data.get("took_in")
    return Used(a.name, a.kind, a.weight, a.sha256, took_in if isinstance(took_in, str) else "")


def from_record(record: object) -> tuple[list[Exchange], list[Attachment], dict]:
    """Exchanges, the files in use and the settings of a record; its files have no path yet. A record
    this demo did not write is refused with a BadInput saying what is wrong with it."""
    if _field(record, "format", str, "the file") != RECORD_FORMAT:
        raise BadInput(f"This chat file is not one this demo exported (its format is not {RECORD_FORMAT!r}).")
    files = [_attachment(f, f"file {i + 1}") for i, f in enumerate(_field(record, "files", list, "the file"))]

    def file_at(index: object, where: str) -> Attachment:
        if not isinstance(index, int) or not 0 <= index < len(files):
            raise BadInput(f"This chat file is not one this demo exported: {where} names file {index!r}, which it does not list.")
        return files[index]

    exchanges = []
    for i, message in enumerate(_field(record, "messages", list, "the file")):
        where = f"message {i + 1}"
        versions = [
            Version(str(_field(a, "text", str, where)), tuple(_used(u, where) for u in _field(a, "used", list, where)))
            for a in _field(message, "answers", list, where)
        ]
        shown = _field(message, "shown", int, where)
        exchange = Exchange(
            question=str(_field(message, "question", str, where)),
            attached=[file_at(n, where) for n in _field(message, "attached", list, where)],
            versions=versions,
            shown=min(max(shown, 0), max(len(versions) - 1, 0)),
        )
        if not exchange.versions and i != len(record["messages"]) - 1:
            raise BadInput(f"This chat file is not one this demo exported: {where} has no answer.")
        exchanges.append(exchange)
    if exchanges and not exchanges[-1].versions:
        exchanges.pop()  # an answer that was still streaming when the record was written
    in_use = [file_at(n, "in_use") for n in _field(record, "in_use", list, "the file")]
    settings = _field(record, "settings", dict, "the file")
    return exchanges, in_use, dict(settings)
