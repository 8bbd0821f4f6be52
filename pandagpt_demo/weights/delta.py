"""Vicuna v0 from LLaMA + LMSYS's delta: target = base + delta, tensor by tensor, in float16.

What FastChat's `apply_delta` (v0) did, without loading either model whole:

- every shape is checked from the files' headers before anything is written; a delta that does
  not belong to its base (another size, another architecture) is refused, naming both shapes;
- the v0 delta's vocabulary has one token more than LLaMA's (`[PAD]`, 32,001 rows): the base's
  `embed_tokens` and `lm_head` are grown with zero rows to the delta's shape, then added, so the
  extra rows are the delta's own. A base that already has as many rows is not LLaMA (a merged
  Vicuna v0 has them too) and is refused;
- each folder must play its role: a delta holds differences, so its final RMSNorm gains
  (`model.norm.weight`) are ~0 where a model's are ~1. That is what tells a merged Vicuna given as
  the delta (shapes alike: it has `[PAD]` too), or a delta given as the base, from the right files;
- tensors are read one at a time (safetensors headers / mmap'd torch files) and written as float16
  safetensors shards of at most `max_shard_bytes`, so RAM holds one output shard at a time;
- `rotary_emb.inv_freq` buffers (in old checkpoints) are dropped: transformers recomputes them;
- config, generation config and tokenizer come from the delta folder (it carries `[PAD]`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from tqdm import tqdm

from pandagpt_demo.errors import PandaGPTError
from pandagpt_demo.model.checkpoints import IGNORED_LLM_KEYS
from pandagpt_demo.model.tensorfiles import FolderTensors

GROWABLE = ("embed_tokens.weight", "lm_head.weight")  # rows = vocabulary
CONFIG_KEYS = ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
COPIED_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)
DTYPE = torch.float16
MAX_SHARD_BYTES = 2 * 1024**3
NORM_KEY = "model.norm.weight"
DELTA_NORM_LIMIT = 0.2  # mean |NORM_KEY|: a real LLaMA's or Vicuna's is ~1-2; a delta's (a difference of two), ~0


class DeltaMismatch(PandaGPTError, ValueError):
    """The delta does not belong to the base; the message names both sides."""


def _config(folder: Path) -> dict:
    path = Path(folder) / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DeltaMismatch(f"'{path}' is missing or not valid JSON ({error})") from error


def _skipped(key: str) -> bool:
    return key.endswith(IGNORED_LLM_KEYS)


def norm_scale(tensors: FolderTensors) -> float | None:
    """mean |model.norm.weight|, which tells a model (above DELTA_NORM_LIMIT) from a delta; None without that tensor."""
    if NORM_KEY not in tensors:
        return None
    return tensors.get(NORM_KEY).float().abs().mean().item()


def _check_roles(base: FolderTensors, delta: FolderTensors, base_dir: Path, delta_dir: Path) -> None:
    """A delta given as the base, or a full model given as the delta, is refused before anything else."""
    base_scale, delta_scale = norm_scale(base), norm_scale(delta)
    if base_scale is not None and base_scale < DELTA_NORM_LIMIT:
        raise DeltaMismatch(
            f"the base '{base_dir}' looks like a delta, not LLaMA (mean |{NORM_KEY}| = {base_scale:.3f}; a model's is ~1): "
            "were the base and the delta swapped?"
        )
    if delta_scale is not None and delta_scale >= DELTA_NORM_LIMIT:
        raise DeltaMismatch(
            f"the delta '{delta_dir}' looks like a full model, not LMSYS's Vicuna delta (mean |{NORM_KEY}| = {delta_scale:.3f}; "
            "a delta's is ~0): if it is a merged Vicuna v0, it needs no delta (`python -m pandagpt_demo.weights download --vicuna DIR` "
            "uses it as it is)"
        )


def plan(base: FolderTensors, delta: FolderTensors, base_dir: Path, delta_dir: Path) -> list[str]:
    """The keys to write, in the delta's order, after checking roles and every shape; raises DeltaMismatch."""
    base_config, delta_config = _config(base_dir), _config(delta_dir)
    for key in CONFIG_KEYS:
        if base_config.get(key) != delta_config.get(key):
            raise DeltaMismatch(
                f"the delta in '{delta_dir}' does not belong to the base in '{base_dir}': config.json {key} is "
                f"{delta_config.get(key)!r} in the delta and {base_config.get(key)!r} in the base"
            )
    _check_roles(base, delta, base_dir, delta_dir)
    base_keys = {k for k in base.keys() if not _skipped(k)}
    delta_keys = [k for k in delta.keys() if not _skipped(k)]
    problems = []
    only_delta = [k for k in delta_keys if k not in base_keys]
    only_base = sorted(base_keys - set(delta_keys))
    if only_delta:
        problems.append(f"{len(only_delta)} tensors only in the delta (e.g. {', '.join(only_delta[:3])})")
    if only_base:
        problems.append(f"{len(only_base)} tensors only in the base (e.g. {', '.join(only_base[:3])})")
    for key in delta_keys:
        if key not in base_keys:
            continue
        problem = _shape_problem(key, base.shape(key), delta.shape(key))
        if problem:
            problems.append(problem)
    if problems:
        shown = "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more" if len(problems) > 4 else "")
        raise DeltaMismatch(f"the delta in '{delta_dir}' does not match the base in '{base_dir}': {shown}")
    return delta_keys


def _shape_problem(key: str, base_shape: tuple[int, ...], delta_shape: tuple[int, ...]) -> str | None:
    """What is wrong with one tensor's two shapes, or None: only the vocabulary's rows may, and must, grow."""
    mismatch = f"{key} is {tuple(delta_shape)} in the delta but {tuple(base_shape)} in the base"
    if not key.endswith(GROWABLE):
        return None if base_shape == delta_shape else mismatch
    if len(base_shape) != 2 or base_shape[1:] != delta_shape[1:] or base_shape[0] > delta_shape[0]:
        return mismatch
    if base_shape[0] == delta_shape[0]:
        return (
            f"{key} has {base_shape[0]} rows in both, but the v0 delta adds [PAD] to LLaMA's vocabulary: the base is "
            "not LLaMA (a merged Vicuna?) or the delta is not a v0 delta"
        )
    return None


def add(base: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """base + delta in float16; a base with fewer rows is grown with zeros to the delta's shape first."""
    base, delta = base.to(DTYPE), delta.to(DTYPE)
    if base.shape != delta.shape:
        grown = torch.zeros(delta.shape, dtype=DTYPE)
        grown[: base.shape[0]] = base
        base = grown
    return base + delta


def apply_delta(base_dir: Path, delta_dir: Path, out_dir: Path, max_shard_bytes: int = MAX_SHARD_BYTES) -> list[Path]:
    """Write Vicuna (= base + delta) into `out_dir` (created; must not hold weights yet). Returns its files."""
    from safetensors.torch import save_file

    base_dir, delta_dir, out_dir = Path(base_dir), Path(delta_dir), Path(out_dir)
    base, delta = FolderTensors(base_dir), FolderTensors(delta_dir)
    keys = plan(base, delta, base_dir, delta_dir)

    shards: list[list[str]] = [[]]
    filled = 0
    for key in keys:
        size = _fp16_bytes(delta.shape(key))
        if shards[-1] and filled + size > max_shard_bytes:
            shards.append([])
            filled = 0
        shards[-1].append(key)
        filled += size

    out_dir.mkdir(parents=True, exist_ok=True)
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map = {}
    written = []
    with tqdm(total=len(keys), desc=f"applying delta -> {out_dir.name}", unit="tensor") as bar:
        for name, shard in zip(names, shards):
            tensors = {}
            for key in shard:
                tensors[key] = add(base.get(key), delta.get(key)).contiguous()
                weight_map[key] = name
                bar.update(1)
            save_file(tensors, str(out_dir / name), metadata={"format": "pt"})
            written.append(out_dir / name)
            del tensors
    total = sum(_fp16_bytes(delta.shape(k)) for k in keys)
    index = out_dir / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n", encoding="utf-8")
    written.append(index)
    for file in COPIED_FILES:
        source = delta_dir / file if (delta_dir / file).exists() else base_dir / file
        if source.exists():
            shutil.copyfile(source, out_dir / file)
            written.append(out_dir / file)
    _set_dtype(out_dir / "config.json")
    return written


def _fp16_bytes(shape: tuple[int, ...]) -> int:
    numel = 1
    for size in shape:
        numel *= size
    return numel * DTYPE.itemsize


def _set_dtype(config_path: Path) -> None:
    """Record float16 as the weights' dtype (the key is `torch_dtype` in old configs, `dtype` in new)."""
    if not config_path.exists():
        return
    config = json.loads(config_path.read_text(encoding="utf-8"))
    key = "dtype" if "dtype" in config else "torch_dtype"
    config[key] = "float16"
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
