"""A tiny LLaMA base and a tiny Vicuna v0 *delta* for it, in the formats of the real repos.

- base (like `huggyllama/llama-7b`): safetensors in two shards with an index, 32,000-token vocabulary,
  plus `.bin` copies of the same weights (the real repo holds both formats);
- delta (like `lmsys/vicuna-7b-delta-v0`): float16 `pytorch_model-0000N-of-00002.bin` shards with an
  index, 32,001 rows (`[PAD]` added), old `rotary_emb.inv_freq` buffers, and a tokenizer with `[PAD]`.

`vicuna` (returned) is the model the delta was made from: base (grown by one row) + a small change.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from pandagpt_demo.config import LLAMA_SHAPES, LlamaShape
from pandagpt_demo.weights.synthetic import llama_tokenizer


def write_llama_pair(directory: Path, shape: LlamaShape = LLAMA_SHAPES["tiny"], seed: int = 0) -> tuple[Path, Path, dict[str, torch.Tensor]]:
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    base_dir, delta_dir = Path(directory) / "llama", Path(directory) / "vicuna_delta"
    base = LlamaForCausalLM._from_config(shape.llama_config(), dtype=torch.float16)
    base.save_pretrained(base_dir, max_shard_size="6MB")
    base_state = {key: value.detach().clone() for key, value in base.state_dict().items()}
    save_bin_shards(base_state, base_dir, shards=1)  # the .bin copy a downloader must not fetch too

    vicuna, delta = {}, {}
    for key, value in base_state.items():
        grown = value
        if key.endswith(("embed_tokens.weight", "lm_head.weight")):
            grown = torch.cat([value, torch.zeros(1, value.shape[1], dtype=value.dtype)])
        change = (torch.randn(grown.shape) * 0.01).to(torch.float16)
        if grown is not value:
            change[-1] = torch.randn(grown.shape[1]).to(torch.float16)  # the [PAD] row is all delta
        delta[key] = change
        vicuna[key] = grown + change
    delta["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8)
    save_bin_shards(delta, delta_dir, shards=2)
    config = shape.llama_config()
    config.vocab_size = shape.vocab_size + 1
    config.save_pretrained(delta_dir)
    tokenizer = llama_tokenizer()
    tokenizer.add_special_tokens({"pad_token": "[PAD]"})
    tokenizer.save_pretrained(delta_dir)
    return base_dir, delta_dir, vicuna


def write_bin_copy(vicuna_dir: Path, out: Path) -> Path:
    """A merged Vicuna folder as `Vision-CAIR/vicuna-7b` lays it out: two `pytorch_model-*.bin` shards with an index."""
    from safetensors.torch import load_file

    out.mkdir(parents=True, exist_ok=True)
    for path in Path(vicuna_dir).iterdir():
        if path.is_file() and not path.name.startswith(".") and not path.name.endswith(".safetensors"):
            (out / path.name).write_bytes(path.read_bytes())
    save_bin_shards(load_file(Path(vicuna_dir) / "model.safetensors"), out, shards=2)
    return out


def save_bin_shards(state: dict[str, torch.Tensor], folder: Path, shards: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    keys = list(state)
    if shards == 1:
        torch.save(state, folder / "pytorch_model.bin")
        return
    weight_map = {}
    for i in range(shards):
        name = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
        part = keys[i * len(keys) // shards : (i + 1) * len(keys) // shards]
        torch.save({key: state[key] for key in part}, folder / name)
        weight_map |= {key: name for key in part}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
