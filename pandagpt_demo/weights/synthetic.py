"""Random model sets written in exactly the released files' formats.

Every loader then runs on them as on the real files: ImageBind's own class saved as
`imagebind_huge.pth`, a LLaMA folder with the real LLaMA tokenizer (32,000 tokens, shipped inside
the `wordllama` wheel), and a PandaGPT delta with the real key names. `tiny` is for tests on the
CPU; `7b` and `13b` have the real sizes, for checks and benchmarks on a GPU.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import torch

from pandagpt_demo.config import LLAMA_SHAPES, LlamaShape, ModelConfig, SpecialTokens
from pandagpt_demo.model.checkpoints import DELTA_LLM_PREFIX, wrap_lora
from pandagpt_demo.model.encoder import ImageBindEncoder
from pandagpt_demo.model.tensorfiles import shard_groups

RANDOM_SET_MARKER = ".random_weights"  # in a Vicuna folder this module wrote, and may rewrite
SHARD_BYTES = 2_000_000_000  # the most one LLM weight file holds (and host memory, while writing it)


def llama_tokenizer():
    """The LLaMA SentencePiece vocabulary as a transformers tokenizer, from the wordllama wheel.

    Only the wheel's file is read: the package is located, not imported (that would pull in pydantic).
    """
    from importlib.util import find_spec

    from tokenizers import Tokenizer
    from transformers import LlamaTokenizer

    spec = find_spec("wordllama")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the LLaMA tokenizer file comes from the wordllama wheel: pip install wordllama")
    source = Path(next(iter(spec.submodule_search_locations))) / "tokenizers" / "l2_supercat_tokenizer_config.json"
    backend = Tokenizer.from_str(source.read_text(encoding="utf-8"))
    tokens = SpecialTokens()
    return LlamaTokenizer(tokenizer_object=backend, bos_token=tokens.bos, eos_token=tokens.eos, unk_token=tokens.unk)


def write_random_model_set(config: ModelConfig, size: str, seed: int = 0, device: str = "cpu", imagebind_from: Path | None = None) -> ModelConfig:
    """Write random weights of `LLAMA_SHAPES[size]` to the three paths of `config`.

    The LLM is saved in float16 for the real sizes (as the released Vicuna), float32 for tiny;
    `device` only speeds up initialising the big ones. The Vicuna folder is written afresh.
    """
    dtype = torch.float32 if size == "tiny" else torch.float16
    return write_model_set(config, LLAMA_SHAPES[size], dtype, seed, device, imagebind_from)


def write_model_set(
    config: ModelConfig,
    shape: LlamaShape,
    dtype: torch.dtype,
    seed: int = 0,
    device: str = "cpu",
    imagebind_from: Path | None = None,
) -> ModelConfig:
    """Write random weights of any LLaMA `shape` (saved in `dtype`) and of `config`'s ImageBind to its three paths.

    An LLM that fits one weight file is built whole by transformers, with its own initialisation
    (the tiny set's weights, and so its answers, stay those of every earlier version); a larger one
    is written shard by shard (`_write_llm_in_shards`), so host memory holds one shard, not the
    model: 13B (26 GB in float16) is made on a 24 GB machine. `imagebind_from` links an existing
    ImageBind file instead of writing another (4.8 GB each at real size).
    """
    torch.manual_seed(seed)
    _write_imagebind(config, device, imagebind_from)
    llm_config = shape.llama_config()
    _fresh_folder(config.files.vicuna_dir)
    shapes = _llm_shapes(llm_config)
    if sum(math.prod(shape) for shape in shapes.values()) * dtype.itemsize <= SHARD_BYTES:
        from transformers import LlamaForCausalLM

        with torch.device(device):
            llm = LlamaForCausalLM._from_config(llm_config, dtype=dtype)
        llm.save_pretrained(config.files.vicuna_dir)
    else:
        llm = None
        _write_llm_in_shards(config.files.vicuna_dir, llm_config, shapes, dtype, device)
    llama_tokenizer().save_pretrained(config.files.vicuna_dir)
    delta = _random_delta(config, llm_config, dtype, llm)
    config.files.delta_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(delta, config.files.delta_path)
    return config


def _write_imagebind(config: ModelConfig, device: str, source: Path | None) -> None:
    path = config.files.imagebind_path
    path.parent.mkdir(parents=True, exist_ok=True)
    if source is not None:
        path.unlink(missing_ok=True)
        try:
            os.link(source, path)  # the same bytes, no second copy on disk
        except OSError:
            shutil.copyfile(source, path)  # another file system
        return
    with torch.device(device):
        encoder = ImageBindEncoder(config.spec.imagebind)
    torch.save({k: v.cpu() for k, v in encoder.model.state_dict().items()}, path)


def _llm_shapes(llm_config) -> dict[str, tuple[int, ...]]:
    """Every tensor of the LLaMA `llm_config` describes, by name, without allocating it."""
    from accelerate import init_empty_weights
    from transformers import LlamaForCausalLM

    with init_empty_weights():
        llm = LlamaForCausalLM._from_config(llm_config)
    return {key: tuple(value.shape) for key, value in llm.state_dict().items()}


def _random_tensor(key: str, shape: tuple[int, ...], llm_config, dtype: torch.dtype, device: str) -> torch.Tensor:
    """transformers' own initialisation of a LLaMA tensor: norms one, the rest normal(0, 0.02), the pad row of the embeddings zero."""
    if key.endswith("norm.weight"):
        return torch.ones(shape, dtype=dtype)
    tensor = torch.empty(shape, device=device).normal_(0.0, llm_config.initializer_range)
    if key.endswith("embed_tokens.weight") and llm_config.pad_token_id is not None:
        tensor[llm_config.pad_token_id] = 0
    return tensor.to("cpu", dtype)


def _write_llm_in_shards(folder: Path, llm_config, shapes: dict[str, tuple[int, ...]], dtype: torch.dtype, device: str) -> None:
    """The LLM's weights as Hugging Face writes a sharded model (`model-0000i-of-0000n.safetensors` and
    its index), each shard made, written and let go."""
    from safetensors.torch import save_file
    from transformers import GenerationConfig, LlamaForCausalLM

    shards = shard_groups({key: math.prod(shape) * dtype.itemsize for key, shape in shapes.items()}, SHARD_BYTES)
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    for name, keys in zip(names, shards):
        save_file({key: _random_tensor(key, shapes[key], llm_config, dtype, device) for key in keys}, folder / name, metadata={"format": "pt"})
    total = sum(math.prod(shape) * dtype.itemsize for shape in shapes.values())
    weight_map = {key: name for name, keys in zip(names, shards) for key in keys}
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    llm_config.dtype = dtype
    llm_config.architectures = [LlamaForCausalLM.__name__]
    llm_config.save_pretrained(folder)
    GenerationConfig.from_model_config(llm_config).save_pretrained(folder)


def _random_delta(config: ModelConfig, llm_config, dtype: torch.dtype, llm: torch.nn.Module | None) -> dict[str, torch.Tensor]:
    """PandaGPT's delta with random LoRA tensors (the names peft gives them) and a random llama_proj;
    `llm`: the model built whole (its LoRA layers are made as before), or None (they are shapes only)."""
    from accelerate import init_empty_weights
    from transformers import LlamaForCausalLM

    if llm is None:
        with init_empty_weights():
            llm = LlamaForCausalLM._from_config(llm_config)
    peft_model = wrap_lora(llm, config.spec.lora)
    delta = {DELTA_LLM_PREFIX + key: (torch.randn(value.shape) * 0.02).to(dtype) for key, value in peft_model.state_dict().items() if ".lora_" in key}
    proj = torch.nn.Linear(config.spec.imagebind.out_embed_dim, llm_config.hidden_size)
    return delta | {"llama_proj.weight": proj.weight.detach(), "llama_proj.bias": proj.bias.detach()}


def _fresh_folder(folder: Path) -> None:
    """Empty the Vicuna folder this module writes: a file left by an earlier set (an `added_tokens.json`,
    a shard of another layout) would be loaded with the new ones. Only a folder this module wrote
    (it holds the marker) or an empty one is emptied, never someone's real Vicuna; a link is
    removed, not what it points to."""
    if folder.is_dir() and not folder.is_symlink() and any(folder.iterdir()) and not (folder / RANDOM_SET_MARKER).exists():
        raise FileExistsError(
            f"{folder} holds files this command did not write (a real Vicuna?); it is left alone: choose another directory, or delete it first"
        )
    if folder.is_symlink() or folder.is_file():
        folder.unlink()
    elif folder.is_dir():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / RANDOM_SET_MARKER).write_text(
        "random weights written by pandagpt_demo.weights.synthetic; this folder is rewritten by make-tiny/make-random\n"
    )


def make_tiny(directory: Path | str, seed: int = 0) -> ModelConfig:
    """Write the tiny model set into `directory` and return the config that loads it."""
    return write_random_model_set(ModelConfig.tiny(directory), "tiny", seed)
