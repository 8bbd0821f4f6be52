"""Is a checkpoints folder loadable? `python -m pandagpt_demo.weights check` and the app's fallback.

Cheap checks only (headers and shapes, no weights loaded), each tied to what `PandaGPT.load` needs:

- `imagebind_huge.pth`: readable, the exact key set and shapes of ImageBind for the preset's size;
- the Vicuna folder: `config.json` (the preset's layer count and width), a tokenizer that loads and
  fits the vocabulary, every weight shard present and readable, the key set and shapes that
  `config.json` implies, and not a *delta* mistaken for Vicuna (its final norm weights would be ~0);
- the PandaGPT delta: `llama_proj` of shape (Vicuna's hidden size, ImageBind's 1024), LoRA tensors
  for as many layers as Vicuna has, with the exact key names and shapes the loader expects;
- sizes against the `manifest.json` that `download` wrote (sha256 sums too, with `--hash`).

Each problem comes with the command that fixes it; `Report.ok` only when the app can load it.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pandagpt_demo.config import LLAMA_SHAPES, ImageBindArch, LlamaShape, ModelConfig
from pandagpt_demo.errors import first_line
from pandagpt_demo.files import human_size, sha256_file
from pandagpt_demo.model.checkpoints import (
    IGNORED_LLM_KEYS,
    PROJ_KEYS,
    TOKENIZER_FILES,
    CheckpointError,
    check_keys,
    load_tokenizer,
    lora_shapes,
    peft_keys,
)
from pandagpt_demo.model.encoder import imagebind_shapes
from pandagpt_demo.model.tensorfiles import FolderTensors, TensorFile, UnreadableFile, weight_files

from .delta import DELTA_NORM_LIMIT, NORM_KEY, norm_scale
from .manifest import read_manifest

OK, MISSING, WRONG = "OK", "missing", "wrong"


@dataclass(frozen=True)
class Part:
    """One of the three things a model set is made of, as `download` fetches it and the manifest names it."""

    key: str  # "imagebind" | "vicuna" | "delta"
    name: str  # path relative to the root: "imagebind_huge.pth", "vicuna_7b_v0", "pandagpt_7b"
    target: Path  # the file or folder put in place


def parts(config: ModelConfig) -> list[Part]:
    root = config.files.root
    return [
        Part("imagebind", config.files.imagebind_path.relative_to(root).as_posix(), config.files.imagebind_path),
        Part("vicuna", config.files.vicuna_dir.relative_to(root).as_posix(), config.files.vicuna_dir),
        Part("delta", config.files.delta_path.parent.relative_to(root).as_posix(), config.files.delta_path.parent),
    ]


@dataclass
class Row:
    part: str  # Part.key
    name: str  # shown path, relative to the root
    status: str  # OK | missing | wrong
    detail: str = ""


@dataclass
class Report:
    model: str
    root: Path
    rows: list[Row] = field(default_factory=list)
    fix_base: str = ""  # the command that writes or fetches this model set
    part_flags: dict[str, list[str]] = field(default_factory=dict)  # flags each part was downloaded with
    replaceable: bool = True  # whether the fix of a wrong part needs --replace (download) or not (make-tiny)

    @property
    def ok(self) -> bool:
        return all(row.status == OK for row in self.rows)

    @property
    def problems(self) -> list[Row]:
        return [row for row in self.rows if row.status != OK]

    def status(self, part: str) -> str:
        statuses = {row.status for row in self.rows if row.part == part}
        return WRONG if WRONG in statuses else MISSING if MISSING in statuses else OK

    def fix_command(self, rows: list[Row] | None = None) -> str:
        """The one command that fixes `rows` (default: every problem)."""
        rows = self.problems if rows is None else rows
        words = [self.fix_base]
        for part in dict.fromkeys(row.part for row in rows):
            words += [shlex.quote(flag) for flag in self.part_flags.get(part, [])]
        if self.replaceable and any(row.status == WRONG for row in rows):
            words.append("--replace")
        return " ".join(words)

    def table(self) -> str:
        width = max((len(row.name) for row in self.rows), default=10)
        lines = [f"{self.model} checkpoints in {self.root}:"]
        lines += [f"  {row.status:<8}{row.name:<{width}}  {row.detail}".rstrip() for row in self.rows]
        if self.ok:
            lines.append("All present and plausible: the app can load them.")
        else:
            lines.append(f"{len(self.problems)} problem(s); the command that fixes each:")
            lines += [f"  {row.name} ({row.status}): {self.fix_command([row])}" for row in self.problems]
        return "\n".join(lines)

    def explanation(self) -> str:
        """One paragraph: what is wrong and the command that fixes it (the app's banner)."""
        if self.ok:
            return f"The {self.model} checkpoints in '{self.root}' are complete."
        listed = "; ".join(f"{row.name} {row.status}" + (f" ({row.detail})" if row.detail and row.status == WRONG else "") for row in self.problems)
        return f"The {self.model} checkpoints in '{self.root}' are not usable: {listed}. Fix: {self.fix_command()}"


def check_model(config: ModelConfig, model: str | None = None, hashes: bool = False) -> Report:
    """Check the three parts of `config` (a `ModelConfig.preset`)."""
    model = model or config.name
    root = config.files.root
    report = Report(model, root)
    if model == "tiny":
        report.fix_base = f"python -m pandagpt_demo.weights make-tiny {shlex.quote(str(root))}"
        report.replaceable = False
    else:
        report.fix_base = f"python -m pandagpt_demo.weights download --model {model} --dir {shlex.quote(str(root))}"
        manifest = read_manifest(root)["components"]
        report.part_flags = {part.key: (manifest.get(part.name) or {}).get("flags", []) for part in parts(config)}
    shape = LLAMA_SHAPES.get(model)
    report.rows.append(check_imagebind(config.files.imagebind_path, config.spec.imagebind, root))
    vicuna_rows, llm_config = check_vicuna(config.files.vicuna_dir, shape, root)
    report.rows += vicuna_rows
    report.rows.append(check_delta(config.files.delta_path, llm_config or shape, config, root))
    report.rows += check_manifest(config, hashes)
    return report


# --- ImageBind --------------------------------------------------------------------------------


def check_imagebind(path: Path, arch: ImageBindArch, root: Path) -> Row:
    name = _relative(path, root)
    if not path.is_file():
        return Row("imagebind", name, MISSING)
    try:
        file = TensorFile(path)
        given = {key: torch.empty(file.shape(key), device="meta") for key in file.keys()}
        check_keys(path, "ImageBind checkpoint", imagebind_shapes(arch), given)
    except UnreadableFile as error:
        return Row("imagebind", name, WRONG, str(error))
    except CheckpointError as error:
        return Row("imagebind", name, WRONG, _differences(error))
    kind = "huge" if arch == ImageBindArch() else "tiny" if arch == ImageBindArch.tiny() else "custom"
    return Row("imagebind", name, OK, f"ImageBind {kind}: {len(given)} tensors, {human_size(path.stat().st_size)}")


# --- Vicuna -----------------------------------------------------------------------------------


def check_vicuna(folder: Path, shape: LlamaShape | None, root: Path) -> tuple[list[Row], object | None]:
    """Rows for a Hugging Face LLM folder, and its config (a transformers config) when readable."""
    name = _relative(folder, root)
    if not folder.is_dir():
        return [Row("vicuna", f"{name}/", MISSING)], None
    rows: list[Row] = []
    config_row, config = _check_llm_config(folder, shape, name)
    rows.append(config_row)
    rows.append(_check_tokenizer(folder, name, config))
    weight_rows, tensors = _check_shards(folder, name)
    rows += weight_rows
    if tensors is not None and config is not None and config_row.status == OK:
        rows.append(_check_llm_tensors(tensors, config, name))
    return rows, config if config_row.status == OK else None


def _check_llm_config(folder: Path, shape: LlamaShape | None, name: str) -> tuple[Row, object | None]:
    path = folder / "config.json"
    row_name = f"{name}/config.json"
    if not path.is_file():
        return Row("vicuna", row_name, MISSING), None
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(folder)
    except Exception as error:  # invalid JSON, unknown model type, ...
        return Row("vicuna", row_name, WRONG, f"not a readable model config ({first_line(error)})"), None
    layers, hidden = getattr(config, "num_hidden_layers", None), getattr(config, "hidden_size", None)
    detail = f"{config.model_type}, {layers} layers, hidden {hidden}, vocabulary {getattr(config, 'vocab_size', '?')}"
    if config.model_type != "llama":
        return Row("vicuna", row_name, WRONG, f"{detail}: Vicuna v0 is a llama model"), config
    if shape is not None and (layers, hidden) != (shape.num_hidden_layers, shape.hidden_size):
        return Row("vicuna", row_name, WRONG, f"{detail}; this size needs {shape.num_hidden_layers} layers, hidden {shape.hidden_size}"), config
    return Row("vicuna", row_name, OK, detail), config


def _check_tokenizer(folder: Path, name: str, config: object | None) -> Row:
    row_name = f"{name}/tokenizer"
    if not any((folder / file).is_file() for file in TOKENIZER_FILES):
        return Row("vicuna", row_name, MISSING, f"neither {' nor '.join(TOKENIZER_FILES)}")
    try:
        tokenizer = load_tokenizer(folder)  # exactly as the app loads it
    except Exception as error:
        return Row("vicuna", row_name, WRONG, f"does not load ({first_line(error)})")
    vocabulary = getattr(config, "vocab_size", None)
    if vocabulary is not None and len(tokenizer) > vocabulary:
        return Row("vicuna", row_name, WRONG, f"{len(tokenizer)} tokens, more than the model's {vocabulary} embedding rows")
    return Row("vicuna", row_name, OK, f"{len(tokenizer)} tokens")


def _check_shards(folder: Path, name: str) -> tuple[list[Row], FolderTensors | None]:
    try:
        index, files = weight_files(folder)
    except UnreadableFile as error:
        return [Row("vicuna", f"{name}/ weights", WRONG, str(error))], None
    if not files:
        return [Row("vicuna", f"{name}/ weights", MISSING, "no model.safetensors / pytorch_model.bin (or their index)")], None
    rows = []
    for file in files:
        path = folder / file
        if not path.is_file():
            rows.append(Row("vicuna", f"{name}/{file}", MISSING, f"listed in {index.name}" if index else ""))
            continue
        try:
            tensors = TensorFile(path)
        except UnreadableFile as error:
            rows.append(Row("vicuna", f"{name}/{file}", WRONG, str(error)))
            continue
        rows.append(Row("vicuna", f"{name}/{file}", OK, f"{len(tensors.keys())} tensors, {human_size(path.stat().st_size)}"))
    if any(row.status != OK for row in rows):
        return rows, None
    return rows, FolderTensors(folder)


def _check_llm_tensors(tensors: FolderTensors, config: object, name: str) -> Row:
    row_name = f"{name}/ weights vs config.json"
    expected = {key: value.shape for key, value in _meta_llm(config).state_dict().items()}
    given = {key: torch.empty(tensors.shape(key), device="meta") for key in tensors.keys() if not key.endswith(IGNORED_LLM_KEYS)}
    try:
        check_keys(tensors.folder, "The weights", expected, given)
    except CheckpointError as error:
        return Row("vicuna", row_name, WRONG, _differences(error))
    norm = norm_scale(tensors)
    if norm < DELTA_NORM_LIMIT:
        return Row("vicuna", row_name, WRONG, f"looks like a delta, not a merged Vicuna (mean |{NORM_KEY}| = {norm:.3f}, a real model's is ~1)")
    return Row("vicuna", row_name, OK, f"{len(given)} tensors, shapes as config.json says")


def _meta_llm(config: object) -> torch.nn.Module:
    """The LLM `config` describes, with every tensor on the `meta` device (no memory)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


# --- PandaGPT delta ---------------------------------------------------------------------------


def check_delta(path: Path, llm: object | LlamaShape | None, config: ModelConfig, root: Path) -> Row:
    name = _relative(path, root)
    if not path.is_file():
        return Row("delta", name, MISSING)
    try:
        file = TensorFile(path)
    except UnreadableFile as error:
        return Row("delta", name, WRONG, str(error))
    keys = file.keys()
    missing_proj = [key for key in PROJ_KEYS if key not in keys]
    if missing_proj:
        return Row("delta", name, WRONG, f"lacks {', '.join(missing_proj)}: not a PandaGPT delta")
    if llm is None:
        return Row("delta", name, OK, "llama_proj present (not compared: no Vicuna config)")
    llm_config = llm.llama_config() if isinstance(llm, LlamaShape) else llm
    layers, hidden = llm_config.num_hidden_layers, llm_config.hidden_size
    lora_layers = {int(match.group(1)) for key in keys if (match := re.search(r"\.layers\.(\d+)\.", key))}
    if len(lora_layers) != layers:
        return Row(
            "delta", name, WRONG, f"LoRA for {len(lora_layers)} layers, but Vicuna has {layers} (num_hidden_layers): a delta for another model size"
        )
    proj = file.shape("llama_proj.weight")
    if proj != (hidden, config.spec.imagebind.out_embed_dim):
        return Row(
            "delta",
            name,
            WRONG,
            f"llama_proj.weight is {proj}, Vicuna (hidden {hidden}) and ImageBind ({config.spec.imagebind.out_embed_dim}-d) need {(hidden, config.spec.imagebind.out_embed_dim)}",
        )
    try:
        given = {target: torch.empty(file.shape(key), device="meta") for key, target in peft_keys(keys, path).items()}
        check_keys(path, "PandaGPT delta (LoRA part)", lora_shapes(llm_config, config.spec.lora), given)
    except CheckpointError as error:
        return Row("delta", name, WRONG, _differences(error))
    return Row("delta", name, OK, f"llama_proj {proj}, LoRA r={config.spec.lora.r} on {layers} layers")


# --- manifest ---------------------------------------------------------------------------------


def check_manifest(config: ModelConfig, hashes: bool = False) -> list[Row]:
    """Wrong rows for files whose size (or, with `hashes`, sha256) differs from the manifest's."""
    root = config.files.root
    rows = []
    manifest = read_manifest(root)["components"]
    for part in parts(config):
        entry = manifest.get(part.name) or {}
        for relative, record in (entry.get("files") or {}).items():
            path = root / relative
            if not path.is_file():
                continue  # a missing file is reported by the part's own check
            size = path.stat().st_size
            if size != record.get("size"):
                rows.append(Row(part.key, relative, WRONG, f"{size:,} bytes, the manifest says {record.get('size'):,}: damaged or replaced"))
            elif hashes and record.get("sha256") and sha256_file(path, relative) != record["sha256"]:
                rows.append(Row(part.key, relative, WRONG, "sha256 differs from the manifest's: damaged or replaced"))
    return rows


# --- helpers ----------------------------------------------------------------------------------


def _relative(path: Path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _differences(error: CheckpointError) -> str:
    """`check_keys`' findings, short: each kind of difference with its count and one example."""
    kinds = (("missing keys", error.missing), ("unexpected keys", error.unexpected), ("wrong shapes", error.mismatched))
    short = [f"{len(items)} {label} (e.g. {items[0]})" for label, items in kinds if items]
    return "; ".join(short) or str(error)
