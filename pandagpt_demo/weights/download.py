"""`python -m pandagpt_demo.weights download`: fetch, assemble and verify one model set.

The steps, in order, so that a failure leaves nothing half-written in place:

1. `check` the folder: parts that are already OK are kept; a part present but *wrong* is only
   replaced with `--replace` (so a mistake never deletes a user's file unasked).
2. Plan: probe each part's sources in order (Hub metadata and access, or a HEAD for a URL) and
   take the first usable one; a source that cannot serve the part (missing, private, gated without
   access, disabled, lacking the files) is skipped with its reason, anything else (network, rate
   limit, bad token) stops at once. The plan is printed, and the download stops before any byte if
   the disk has too little free space.
3. Fetch each part into `ROOT/.download/` (Hub files through huggingface_hub, the URL with Range
   resume), verify it (sizes, sha256 sums, then the same checks as `check`), and only then move it
   to its place and record it in `manifest.json`.
4. `check` again and return the report.

Vicuna comes one of three ways: a merged v0 repo from the Hub, a folder the user has (`--vicuna
DIR`, linked), or `--from-delta`: LLaMA + LMSYS's v0 delta, applied here (`delta.py`). Without a
flag its candidates are tried in order (merged copies first, the build last). Repo ids and URLs come
from `config.WEIGHT_SOURCES`; a flag forces one source for its part.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pandagpt_demo.config import IMAGEBIND_URL, IMAGEBIND_URL_ENV, LLAMA_SHAPES, WEIGHT_SOURCES, Candidate, ModelConfig
from pandagpt_demo.files import human_size
from pandagpt_demo.model.tensorfiles import WEIGHT_LAYOUTS, UnreadableFile

from .check import OK, WRONG, Part, Report, check_delta, check_imagebind, check_model, check_vicuna, parts
from .delta import COPIED_FILES, DeltaMismatch, apply_delta
from .fetch import RepoListing, fetch_hub_file, fetch_url, list_repo, url_metadata
from .fetch_errors import DownloadError, SourceUnusable
from .manifest import file_record, read_manifest, record_component
from .progress import DownloadMeter

STAGE = ".download"


@dataclass(frozen=True)
class Request:
    """What the user asked for (the command's flags); None means the size's default."""

    model: str
    directory: Path = Path("checkpoints")
    delta_repo: str | None = None
    vicuna_dir: Path | None = None
    vicuna_repo: str | None = None
    from_delta: bool = False
    base_repo: str | None = None
    vicuna_delta_repo: str | None = None
    imagebind_repo: str | None = None
    imagebind_url: str | None = None
    replace: bool = False
    directory_flag: str = "--checkpoints"  # how the command asking names `directory` (app.py; `weights download` says --dir)


@dataclass(frozen=True)
class Source:
    """Where one part may come from: a candidate of `WEIGHT_SOURCES`, or what a flag forced."""

    kind: str  # url | repo | folder | from-delta
    ids: tuple[str, ...]  # the URL, repo id(s) or folder
    flags: tuple[str, ...] = ()  # the command-line flags that asked for it (recorded, for `check`'s fix)
    forced: bool = False  # asked for by a flag: no other candidate is tried
    publisher: str = ""

    @property
    def key(self) -> str:
        return f"{self.kind}:{'+'.join(self.ids)}"

    @property
    def label(self) -> str:
        text = " + ".join(self.ids) + (", built here" if self.kind == "from-delta" else "")
        return f"{text} ({self.publisher})" if self.publisher else text

    @classmethod
    def candidate(cls, candidate: Candidate) -> Source:
        return cls(candidate.kind, candidate.ids, publisher=candidate.publisher)


def resolve(request: Request) -> dict[str, list[Source]]:
    """Each part's sources in the order to try: the one a flag forces, or `WEIGHT_SOURCES`' candidates."""
    defaults = WEIGHT_SOURCES.get(request.model)

    def pick(value: str | None, default: str | None, flag: str) -> tuple[str, tuple[str, ...]]:
        if value:
            return value, (flag, value) if value != default else ()
        if default:
            return default, ()
        raise DownloadError(
            f"The {request.model} model has no published weights to download, so {flag} is needed (with every other "
            f"source flag). For the tiny test model, write it locally: python -m pandagpt_demo.weights make-tiny DIR."
        )

    def default(part: str, flag: str) -> list[Source]:
        if defaults is None:
            pick(None, None, flag)
        return [Source.candidate(candidate) for candidate in defaults.candidates(part)]

    sources: dict[str, list[Source]] = {}
    url_override = request.imagebind_url or os.environ.get(IMAGEBIND_URL_ENV)
    if request.imagebind_repo:
        sources["imagebind"] = [Source("repo", (request.imagebind_repo,), ("--imagebind-repo", request.imagebind_repo), True)]
    elif url_override:
        sources["imagebind"] = [Source("url", (url_override,), ("--imagebind-url", url_override) if url_override != IMAGEBIND_URL else (), True)]
    else:
        sources["imagebind"] = default("imagebind", "--imagebind-url")
    if request.vicuna_dir:
        folder = str(Path(request.vicuna_dir).expanduser().resolve())
        sources["vicuna"] = [Source("folder", (folder,), ("--vicuna", folder), True)]
    elif request.from_delta:
        pair = defaults.from_delta().ids if defaults else (None, None)
        base, base_flags = pick(request.base_repo, pair[0], "--base-repo")
        delta, delta_flags = pick(request.vicuna_delta_repo, pair[1], "--vicuna-delta-repo")
        sources["vicuna"] = [Source("from-delta", (base, delta), ("--from-delta", *base_flags, *delta_flags), True)]
    elif request.vicuna_repo:
        sources["vicuna"] = [Source("repo", (request.vicuna_repo,), ("--vicuna-repo", request.vicuna_repo), True)]
    else:
        sources["vicuna"] = default("vicuna", "--vicuna-repo")
    if request.delta_repo:
        sources["delta"] = [Source("repo", (request.delta_repo,), ("--delta-repo", request.delta_repo), True)]
    else:
        sources["delta"] = default("delta", "--delta-repo")
    return sources


@dataclass
class Plan:
    """One part to fetch: what it costs on disk (bytes still to write) and how to fetch it."""

    part: Part
    source: Source
    bytes_needed: int
    describe: str
    fetch: Callable[[], None] = field(repr=False)
    skipped: list[tuple[Source, str]] = field(default_factory=list)  # earlier candidates, and why each was passed over
    alternatives: list[Source] = field(default_factory=list)  # later candidates, to name if this one fails


def download(request: Request, say: Callable[[str], None] = print, meter: DownloadMeter | None = None) -> Report:
    """Fetch what is missing of `request.model` into `request.directory`; returns the final check.

    `meter` counts the bytes as they arrive (the app's page shows it); the terminal's bars show them anyway.
    """
    meter = meter or DownloadMeter()
    bar = meter.bar_class()
    config = ModelConfig.preset(request.model, request.directory)
    root = config.files.root
    sources = resolve(request)
    report = check_model(config, request.model)
    recorded = read_manifest(root)["components"]
    todo: list[Part] = []
    wrong: list[str] = []
    for part in parts(config):
        status, keys = report.status(part.key), {source.key for source in sources[part.key]}
        origin = (recorded.get(part.name) or {}).get("source")
        if status == OK and not (request.replace and origin is not None and origin not in keys):
            say(f"{part.name}: OK, kept" + (f" (from {origin})" if origin else ""))
        elif status == WRONG and not request.replace:
            details = "; ".join(f"{row.name}: {row.detail}" for row in report.problems if row.part == part.key)
            wrong.append(f"{part.name} ({details})")
        else:
            todo.append(part)
    if wrong:
        raise DownloadError(
            f"Present but wrong in '{root}': {'; '.join(wrong)}. Nothing was downloaded. To replace them, run the same "
            f"command with --replace (or move them away first)."
        )
    stage = root / STAGE  # one subfolder per source, so a changed source never mixes with old bytes
    if not todo:
        _discard(stage)
        say("Nothing to download.")
        return report
    plans = [_choose(part, sources[part.key], config, stage, say, bar) for part in todo]  # every source probed before any byte moves
    say("Plan:")
    for plan in plans:
        say(f"  {plan.part.name}: {plan.source.label}: {plan.describe}, {human_size(plan.bytes_needed)} to fetch")
        for source, reason in plan.skipped:
            say(f"    skipped {source.label}: {reason}")
    free = _check_disk(root, plans, request.model, request.directory_flag)
    say(f"To download: {human_size(sum(plan.bytes_needed for plan in plans))} into {root} ({human_size(free)} free on that disk).")
    done: list[str] = []
    meter.begin(sum(plan.bytes_needed for plan in plans), len(plans))
    for index, plan in enumerate(plans, 1):
        meter.part(plan.part.name, index)
        say(f"{plan.part.name}: fetching from {plan.source.label}")
        try:
            plan.fetch()
        except DownloadError as error:
            raise DownloadError(_after_failure(str(error), plan, done)) from error
        done.append(plan.part.name)
    _discard(stage)  # every part is in place: what is left there came from other sources
    return check_model(config, request.model)


def _choose(part: Part, sources: list[Source], config: ModelConfig, stage: Path, say: Callable[[str], None], bar: type) -> Plan:
    """The plan of the first usable source; each earlier one is probed and skipped with its reason."""
    skipped: list[tuple[Source, SourceUnusable]] = []
    for index, source in enumerate(sources):
        try:
            plan = _plan(part, source, config, stage / _stage_name(source), say, bar)
        except SourceUnusable as unusable:
            if source.forced:
                raise
            skipped.append((source, unusable))
            continue
        plan.skipped = [(earlier, unusable.reason) for earlier, unusable in skipped]
        plan.alternatives = sources[index + 1 :]
        return plan
    tried = " ".join(f"({number}) {source.label}: {unusable}" for number, (source, unusable) in enumerate(skipped, 1))
    own = " If you already have a merged Vicuna v0 folder, pass it with --vicuna DIR." if part.key == "vicuna" else ""
    raise DownloadError(f"No source of {part.name} can be used, so nothing was downloaded. Tried in order: {tried}{own}")


def _after_failure(message: str, plan: Plan, done: list[str]) -> str:
    """A fetch's failure, with what is kept and the next candidate (as the flag that asks for it)."""
    kept = f" Already in place and kept: {', '.join(done)}." if done else ""
    others = [_forcing_flags(plan.part.key, source) for source in plan.alternatives]
    then = f" Other sources of {plan.part.name}, if this one keeps failing: {'; '.join(others)}." if others else ""
    return message + kept + then


def _forcing_flags(part: str, source: Source) -> str:
    """The flags that make `download` use `source` for `part`, for error messages."""
    if source.kind == "from-delta":
        return f"--from-delta (LLaMA {source.ids[0]} + delta {source.ids[1]})"
    flag = {"imagebind": "--imagebind-url" if source.kind == "url" else "--imagebind-repo", "vicuna": "--vicuna-repo", "delta": "--delta-repo"}[part]
    return f"{flag} {source.ids[0]}"


# --- planning each part -----------------------------------------------------------------------


def _plan(part: Part, source: Source, config: ModelConfig, stage: Path, say: Callable[[str], None], bar: type) -> Plan:
    """How to fetch `part` from `source`; `bar`: the progress bars' class (tqdm, counting into a meter)."""
    root = config.files.root
    shape = LLAMA_SHAPES.get(config.name)
    if part.key == "imagebind":
        return _plan_imagebind(part, source, config, stage, bar)
    if part.key == "delta":
        what = f"PandaGPT's {config.name} delta"
        listing = list_repo(source.ids[0], what, "--delta-repo")
        _require_listed(listing, "pytorch_model.pt", what, "--delta-repo")
        needed = _missing_bytes(listing, ["pytorch_model.pt"], stage / part.name)

        def fetch_delta() -> None:
            local, record = fetch_hub_file(listing, "pytorch_model.pt", stage / part.name, what, "--delta-repo", bar)
            llm = check_vicuna(config.files.vicuna_dir, shape, root)[1] or shape
            _require_ok(check_delta(local, llm, config, stage / part.name), f"{what} from {listing.repo}")
            _install(local, config.files.delta_path)
            _discard(stage / part.name)
            files = {config.files.delta_path.relative_to(root).as_posix(): record}
            record_component(root, part.name, source=source.key, flags=list(source.flags), origins=[listing.origin()], files=files)

        return Plan(part, source, needed, f"pytorch_model.pt from {listing.page}", fetch_delta)
    if source.kind == "folder":
        return _plan_vicuna_folder(part, source, config, shape, say)
    if source.kind == "from-delta":
        return _plan_vicuna_from_delta(part, source, config, shape, stage, bar)
    what = f"Vicuna v0 {config.name}"
    listing = list_repo(source.ids[0], what, "--vicuna-repo")
    names = _llm_files(listing, what, "--vicuna-repo")
    needed = _missing_bytes(listing, names, stage / part.name)

    def fetch_vicuna() -> None:
        records = _fetch_all(listing, names, stage / part.name, what, "--vicuna-repo", bar)
        _verify_llm(stage / part.name, shape, f"{what} from {listing.repo}")
        _install_folder(stage / part.name, part.target)
        files = {f"{part.name}/{name}": record for name, record in records.items()}
        record_component(root, part.name, source=source.key, flags=list(source.flags), origins=[listing.origin()], files=files)

    return Plan(part, source, needed, f"{len(names)} files from {listing.page}", fetch_vicuna)


def _plan_imagebind(part: Part, source: Source, config: ModelConfig, stage: Path, bar: type) -> Plan:
    root = config.files.root
    what = "ImageBind-huge (imagebind_huge.pth)"
    if source.kind == "url":
        url = source.ids[0]
        size, _ = url_metadata(url, what, "--imagebind-repo ID (a Hugging Face mirror) or --imagebind-url URL")
        partial = stage / f"{part.name}.part"
        needed = size - (partial.stat().st_size if partial.exists() and partial.stat().st_size <= size else 0)

        def fetch() -> None:
            staged = stage / part.name
            record = fetch_url(url, staged, what, "--imagebind-repo ID (a Hugging Face mirror) or --imagebind-url URL", stage, bar)
            _require_ok(check_imagebind(staged, config.spec.imagebind, stage), f"the file at {url}")
            _install(staged, config.files.imagebind_path)
            record_component(root, part.name, source=source.key, flags=list(source.flags), origins=[{"url": url}], files={part.name: record})

        return Plan(part, source, needed, "1 file", fetch)
    listing = list_repo(source.ids[0], what, "--imagebind-repo")
    candidates = [name for name in listing.files if name.endswith(".pth")]
    name = part.name if part.name in listing.files else candidates[0] if len(candidates) == 1 else part.name
    _require_listed(listing, name, what, "--imagebind-repo")
    needed = _missing_bytes(listing, [name], stage / part.name)

    def fetch_mirror() -> None:
        local, record = fetch_hub_file(listing, name, stage / part.name, what, "--imagebind-repo", bar)
        _require_ok(check_imagebind(local, config.spec.imagebind, stage), f"{name} from {listing.repo}")
        _install(local, config.files.imagebind_path)
        _discard(stage / part.name)
        record_component(root, part.name, source=source.key, flags=list(source.flags), origins=[listing.origin()], files={part.name: record})

    return Plan(part, source, needed, f"{name} from {listing.page}", fetch_mirror)


def _plan_vicuna_folder(part: Part, source: Source, config: ModelConfig, shape, say: Callable[[str], None]) -> Plan:
    root = config.files.root
    folder = Path(source.ids[0])
    _verify_llm(folder, shape, f"the Vicuna folder '{folder}' (--vicuna)")

    def link() -> None:
        if part.target.resolve() == folder:
            return  # the folder already is the part
        _remove(part.target)
        part.target.parent.mkdir(parents=True, exist_ok=True)
        try:
            part.target.symlink_to(folder, target_is_directory=True)
            say(f"{part.name}: linked to {folder}")
        except OSError:  # no symlinks (some Windows setups): copy
            shutil.copytree(folder, part.target)
            say(f"{part.name}: copied from {folder}")
        record_component(root, part.name, source=source.key, flags=list(source.flags), origins=[{"folder": str(folder)}], files={})

    return Plan(part, source, 0, f"your folder {folder}", link)


def _plan_vicuna_from_delta(part: Part, source: Source, config: ModelConfig, shape, stage: Path, bar: type) -> Plan:
    root = config.files.root
    base_repo, delta_repo = source.ids
    base = list_repo(base_repo, f"LLaMA {config.name} (the base for --from-delta)", "--base-repo")
    delta = list_repo(delta_repo, f"the Vicuna v0 {config.name} delta", "--vicuna-delta-repo")
    base_names = [name for name in _llm_files(base, "LLaMA", "--base-repo") if name not in COPIED_FILES or name == "config.json"]
    delta_names = _llm_files(delta, "the Vicuna delta", "--vicuna-delta-repo")
    base_stage, delta_stage, out_stage = stage / f"{part.name}.base", stage / f"{part.name}.delta", stage / part.name
    output_estimate = sum(delta.files[name].size for name in delta_names if name not in COPIED_FILES)
    needed = _missing_bytes(base, base_names, base_stage) + _missing_bytes(delta, delta_names, delta_stage) + output_estimate

    def assemble() -> None:
        base_records = _fetch_all(base, base_names, base_stage, "LLaMA (the base)", "--base-repo", bar)
        delta_records = _fetch_all(delta, delta_names, delta_stage, "the Vicuna delta", "--vicuna-delta-repo", bar)
        _discard(out_stage)
        try:
            written = apply_delta(base_stage, delta_stage, out_stage)
        except (DeltaMismatch, UnreadableFile) as error:
            _discard(out_stage)
            raise DownloadError(
                f"Cannot make Vicuna from {base_repo} + {delta_repo}: {error}. Choose a matching pair with --base-repo / --vicuna-delta-repo."
            ) from error
        _verify_llm(out_stage, shape, f"Vicuna made from {base_repo} + {delta_repo}")
        records = {f"{part.name}/{path.name}": file_record(path) for path in written}
        _install_folder(out_stage, part.target)
        _discard(base_stage)
        _discard(delta_stage)
        origins = [
            base.origin() | {"role": "base", "files": base_records},
            delta.origin() | {"role": "delta", "files": delta_records},
        ]
        record_component(root, part.name, source=source.key, flags=list(source.flags), origins=origins, files=records)

    return Plan(part, source, needed, f"LLaMA from {base.page} + delta from {delta.page}, then applied", assemble)


# --- helpers ----------------------------------------------------------------------------------


def _llm_files(listing: RepoListing, what: str, flag: str) -> list[str]:
    """The files of a Hugging Face LLM folder worth fetching: one weight format, config, tokenizer."""
    names = [name for name in listing.files if "/" not in name]
    for index, _single, pattern in WEIGHT_LAYOUTS:  # noqa: B007 (the index of the format found is used after the loop)
        shards = sorted(name for name in names if pattern.fullmatch(name))
        if shards:
            break
    else:
        raise SourceUnusable(
            f"{what}: the Hub repository {listing.repo} ({listing.page}) holds no model weights (*.safetensors or pytorch_model*.bin); pass another with {flag}.",
            "no model weights in it",
        )
    if "config.json" not in names:
        raise SourceUnusable(
            f"{what}: the Hub repository {listing.repo} ({listing.page}) has no config.json; pass another with {flag}.", "no config.json in it"
        )
    extra = [name for name in COPIED_FILES if name in names]
    return extra + ([index] if index in names else []) + shards


def _require_listed(listing: RepoListing, name: str, what: str, flag: str) -> None:
    if name not in listing.files:
        raise SourceUnusable(
            f"Could not fetch {what} from {listing.url(name)}: the file '{name}' is not in the Hub repository "
            f"{listing.repo} at revision {listing.revision} (the Hub lists no such file). The repository's layout may have changed; see "
            f"{listing.page}, or pass another repository with {flag}. Nothing was downloaded.",
            f"no {name} in it",
        )


def _missing_bytes(listing: RepoListing, names: list[str], local_dir: Path) -> int:
    """Bytes still to fetch: files already complete in the staging folder do not count."""
    return sum(
        listing.files[name].size
        for name in names
        if name in listing.files and not ((local_dir / name).is_file() and (local_dir / name).stat().st_size == listing.files[name].size)
    )


def _fetch_all(listing: RepoListing, names: list[str], local_dir: Path, what: str, flag: str, bar: type) -> dict[str, dict]:
    return {name: fetch_hub_file(listing, name, local_dir, what, flag, bar)[1] for name in names}


def _require_ok(row, what: str) -> None:
    if row.status != OK:
        raise DownloadError(f"{what} was downloaded but is not usable: {row.detail or row.status}. It was not put in place.")


def _verify_llm(folder: Path, shape, what: str) -> None:
    rows, _ = check_vicuna(folder, shape, folder.parent)
    problems = [f"{row.name} {row.status}" + (f" ({row.detail})" if row.detail else "") for row in rows if row.status != OK]
    if problems:
        raise DownloadError(f"{what} is not a usable Vicuna v0 folder: {'; '.join(problems)}. It was not put in place.")


def _check_disk(root: Path, plans: list[Plan], model: str, directory_flag: str) -> int:
    """The free bytes on the folder's disk; raises DownloadError before any download if too few.

    `directory_flag` is the asking command's own name for the folder (app.py: --checkpoints; `weights download`: --dir).
    """
    needed = sum(plan.bytes_needed for plan in plans)
    probe = root
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed > free:
        parts_text = ", ".join(f"{plan.part.name} {human_size(plan.bytes_needed)}" for plan in plans if plan.bytes_needed)
        elsewhere = f"with {directory_flag}" + ("" if directory_flag == "--checkpoints" else " (and start the app with --checkpoints pointing there)")
        raise DownloadError(
            f"Not enough disk space for the {model} weights in '{root}': {human_size(needed)} still to write ({parts_text}) but only "
            f"{human_size(free)} free on that disk. Nothing was downloaded. Free some space, or choose a folder on another disk {elsewhere}."
        )
    return free


def _install(staged: Path, target: Path) -> None:
    """Put a verified file in place (replacing whatever was there)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    os.replace(staged, target)


def _install_folder(staged: Path, target: Path) -> None:
    """Put a verified folder in place, without huggingface_hub's bookkeeping."""
    _discard(staged / ".cache")
    _remove(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, target)


def _remove(path: Path) -> None:
    """Remove a file, a link (never what it points to) or a folder, if present."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _discard(path: Path) -> None:
    if path.exists() or path.is_symlink():
        _remove(path)


def _stage_name(source: Source) -> str:
    return hashlib.sha1(source.key.encode()).hexdigest()[:10]
