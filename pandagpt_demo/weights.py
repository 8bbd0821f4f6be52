"""Command line for checkpoint folders: `python -m pandagpt_demo.weights make-tiny DIR`.

`make-tiny` writes a random, tiny model set in exactly the released files' formats, so every
loader runs on it as on the real files: ImageBind's class with small widths saved as
`imagebind_huge.pth`, a small LLaMA folder with the real LLaMA tokenizer (32,000 tokens, shipped
inside the `wordllama` wheel), and a PandaGPT delta with the real key names.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .checkpoints import DELTA_LLM_PREFIX, wrap_lora
from .config import ModelConfig
from .encoder import ImageBindEncoder

TINY_LLAMA = dict(
    vocab_size=32000,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=4,
    max_position_embeddings=2048,
    rms_norm_eps=1e-6,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
    tie_word_embeddings=False,
)


def llama_tokenizer():
    """The LLaMA SentencePiece vocabulary as a transformers tokenizer, from the wordllama wheel."""
    from importlib.resources import files

    from tokenizers import Tokenizer
    from transformers import LlamaTokenizer

    source = files("wordllama") / "tokenizers" / "l2_supercat_tokenizer_config.json"
    backend = Tokenizer.from_str(source.read_text(encoding="utf-8"))
    return LlamaTokenizer(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def make_tiny(directory: Path | str, seed: int = 0) -> ModelConfig:
    """Write the tiny model set into `directory` and return the config that loads it."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = ModelConfig.tiny(directory)
    torch.manual_seed(seed)
    Path(directory).mkdir(parents=True, exist_ok=True)

    encoder = ImageBindEncoder(config.imagebind)
    torch.save(encoder.model.state_dict(), config.imagebind_path)

    llm = LlamaForCausalLM(LlamaConfig(**TINY_LLAMA))
    llm.save_pretrained(config.vicuna_dir)
    llama_tokenizer().save_pretrained(config.vicuna_dir)

    peft_model = wrap_lora(llm, config.lora)
    delta = {
        DELTA_LLM_PREFIX + key: torch.randn_like(value) * 0.02
        for key, value in peft_model.state_dict().items()
        if ".lora_" in key
    }
    proj = torch.nn.Linear(config.imagebind.out_embed_dim, llm.config.hidden_size)
    delta |= {"llama_proj.weight": proj.weight.detach(), "llama_proj.bias": proj.bias.detach()}
    config.delta_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(delta, config.delta_path)
    return config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pandagpt_demo.weights", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    tiny = commands.add_parser("make-tiny", help="write a tiny random model set in the released formats")
    tiny.add_argument("directory", type=Path)
    tiny.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "make-tiny":
        config = make_tiny(args.directory, args.seed)
        print(f"wrote {config.imagebind_path}, {config.vicuna_dir}/, {config.delta_path}")


if __name__ == "__main__":
    main()
