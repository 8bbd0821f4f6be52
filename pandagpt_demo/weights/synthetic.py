"""Random model sets written in exactly the released files' formats.

Every loader then runs on them as on the real files: ImageBind's own class saved as
`imagebind_huge.pth`, a LLaMA folder with the real LLaMA tokenizer (32,000 tokens, shipped inside
the `wordllama` wheel), and a PandaGPT delta with the real key names. `tiny` is for tests on the
CPU; `7b` and `13b` have the real sizes, for checks and benchmarks on a GPU.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from pandagpt_demo.config import LLAMA_SHAPES, LlamaShape, ModelConfig, SpecialTokens
from pandagpt_demo.model.checkpoints import DELTA_LLM_PREFIX, wrap_lora
from pandagpt_demo.model.encoder import ImageBindEncoder

RANDOM_SET_MARKER = ".random_weights"  # in a Vicuna folder this module wrote, and may rewrite


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


def write_random_model_set(config: ModelConfig, size: str, seed: int = 0, device: str = "cpu") -> ModelConfig:
    """Write random weights of `LLAMA_SHAPES[size]` to the three paths of `config`.

    The LLM is saved in float16 for the real sizes (as the released Vicuna), float32 for tiny;
    `device` only speeds up initialising the big ones. The Vicuna folder is written afresh.
    """
    dtype = torch.float32 if size == "tiny" else torch.float16
    return write_model_set(config, LLAMA_SHAPES[size], dtype, seed, device)


def write_model_set(config: ModelConfig, shape: LlamaShape, dtype: torch.dtype, seed: int = 0, device: str = "cpu") -> ModelConfig:
    """Write random weights of any LLaMA `shape` (saved in `dtype`) and of `config`'s ImageBind to its three paths."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    config.files.imagebind_path.parent.mkdir(parents=True, exist_ok=True)
    with torch.device(device):
        encoder = ImageBindEncoder(config.spec.imagebind)
    torch.save({k: v.cpu() for k, v in encoder.model.state_dict().items()}, config.files.imagebind_path)
    del encoder

    with torch.device(device):
        llm = LlamaForCausalLM._from_config(shape.llama_config(), dtype=dtype)
    _fresh_folder(config.files.vicuna_dir)
    llm.save_pretrained(config.files.vicuna_dir)
    llama_tokenizer().save_pretrained(config.files.vicuna_dir)

    peft_model = wrap_lora(llm, config.spec.lora)
    delta = {
        DELTA_LLM_PREFIX + key: (torch.randn_like(value, dtype=torch.float32) * 0.02).to(value.dtype).cpu()
        for key, value in peft_model.state_dict().items()
        if ".lora_" in key
    }
    proj = torch.nn.Linear(config.spec.imagebind.out_embed_dim, llm.config.hidden_size)
    delta |= {"llama_proj.weight": proj.weight.detach(), "llama_proj.bias": proj.bias.detach()}
    config.files.delta_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(delta, config.files.delta_path)
    return config


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
