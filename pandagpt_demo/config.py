"""All configuration of the demo in dataclasses: architecture sizes, file layout, LoRA, sampling.

Presets (`ModelConfig.preset`) name the released model sets; nothing else in the package hard-codes
a size, a path or a token id.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

MODEL_SIZES = ("7b", "13b", "tiny")
QUANTIZATIONS = ("8bit", "4bit")
IMAGEBIND_URL = "https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth"
IMAGEBIND_URL_ENV = "PANDAGPT_IMAGEBIND_URL"  # overrides IMAGEBIND_URL (a mirror, or a test server)


@dataclass(frozen=True)
class WeightSources:
    """Where `python -m pandagpt_demo.weights download` gets one model size: Hub repo ids and URLs.

    The only place in the package that names them; every one can be overridden by a flag.
    """

    pandagpt_delta: str  # PandaGPT's delta (llama_proj + LoRA), `pytorch_model.pt`
    pandagpt_delta_variants: tuple[str, ...]  # the other released deltas (trained with other max_len)
    vicuna: str  # a merged Vicuna v0 folder in Hugging Face format
    llama_base: str  # for --from-delta: LLaMA v1 in Hugging Face format ...
    vicuna_delta: str  # ... plus LMSYS's Vicuna v0 delta (vocabulary + 1: "[PAD]")
    imagebind_url: str = IMAGEBIND_URL


WEIGHT_SOURCES = {
    "7b": WeightSources(
        pandagpt_delta="openllmplayground/pandagpt_7b_max_len_1024",
        pandagpt_delta_variants=("openllmplayground/pandagpt_7b_max_len_512",),
        vicuna="openllmplayground/vicuna_7b_v0",  # published by PandaGPT's authors
        llama_base="huggyllama/llama-7b",
        vicuna_delta="lmsys/vicuna-7b-delta-v0",
    ),
    "13b": WeightSources(
        pandagpt_delta="openllmplayground/pandagpt_13b_max_len_400",
        pandagpt_delta_variants=("openllmplayground/pandagpt_13b_max_len_256",),
        vicuna="Vision-CAIR/vicuna",  # published by MiniGPT-4's authors
        llama_base="huggyllama/llama-13b",
        vicuna_delta="lmsys/vicuna-13b-delta-v0",
    ),
}


@dataclass(frozen=True)
class ImageBindArch:
    """Widths and depths of ImageBind's six towers; the defaults are `imagebind_huge`."""

    out_embed_dim: int = 1024
    vision_embed_dim: int = 1280
    vision_num_blocks: int = 32
    vision_num_heads: int = 16
    text_embed_dim: int = 1024
    text_num_blocks: int = 24
    text_num_heads: int = 16
    audio_embed_dim: int = 768
    audio_num_blocks: int = 12
    audio_num_heads: int = 12
    depth_embed_dim: int = 384
    depth_num_blocks: int = 12
    depth_num_heads: int = 8
    thermal_embed_dim: int = 768
    thermal_num_blocks: int = 12
    thermal_num_heads: int = 12
    imu_embed_dim: int = 512
    imu_num_blocks: int = 6
    imu_num_heads: int = 8

    def kwargs(self) -> dict[str, int]:
        """Keyword arguments for `imagebind.models.imagebind_model.ImageBindModel`."""
        return asdict(self)

    @classmethod
    def tiny(cls) -> "ImageBindArch":
        """Same class and layout as huge, every tower 32 wide and one block deep."""
        sizes: dict[str, int] = {}
        for tower in ("vision", "text", "audio", "depth", "thermal", "imu"):
            sizes |= {f"{tower}_embed_dim": 32, f"{tower}_num_blocks": 1, f"{tower}_num_heads": 2}
        return cls(out_embed_dim=32, **sizes)


@dataclass(frozen=True)
class LlamaShape:
    """The sizes of a LLaMA/Vicuna v0 model, for writing random model sets (real ones bring config.json)."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    vocab_size: int = 32000

    def llama_config(self):
        """A transformers `LlamaConfig` with LLaMA v1's fixed settings (2048 context, ids 0/1/2)."""
        from transformers import LlamaConfig

        return LlamaConfig(
            **asdict(self),
            num_key_value_heads=self.num_attention_heads,
            max_position_embeddings=2048,
            rms_norm_eps=1e-6,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
            tie_word_embeddings=False,
        )


LLAMA_SHAPES = {
    "tiny": LlamaShape(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4),
    "7b": LlamaShape(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32),
    "13b": LlamaShape(hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40),
}


@dataclass(frozen=True)
class LoraSpec:
    """PandaGPT's LoRA hyper-parameters (scale alpha / r = 1)."""

    r: int = 32
    alpha: int = 32
    dropout: float = 0.1
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass(frozen=True)
class SpecialTokens:
    """LLaMA's SentencePiece control pieces; their ids come from the vocabulary itself (0, 1, 2).

    Named explicitly when loading, because early Vicuna folders cannot be trusted with them: some
    leave them empty in tokenizer_config.json (transformers then fails to load), some write
    bos 0 / eos 1 in config.json (a prompt would start with <unk> and answers stop on <s>).
    """

    unk: str = "<unk>"
    bos: str = "<s>"
    eos: str = "</s>"
    ids: tuple[int, int, int] = (0, 1, 2)  # of unk, bos, eos in LLaMA's vocabulary: checked at load

    def pieces(self) -> list[tuple[str, str, int]]:
        """(role, piece, expected id) of each control piece."""
        return list(zip(("unk", "bos", "eos"), (self.unk, self.bos, self.eos), self.ids))


@dataclass(frozen=True)
class PromptTemplate:
    """PandaGPT's conversation format as data (see REFERENCE.md, 'The model')."""

    human_prefix: str = "### Human: "
    image_open: str = "<Img>"
    image_close: str = "</Img> "
    assistant_tag: str = "\n### Assistant:"
    turn_separator: str = "\n###"
    later_question_prefix: str = " Human: "
    stop_text: str = "###"


@dataclass(frozen=True)
class SamplingParams:
    """Per-request decoding settings; temperature 0 or top-p 0 mean greedy."""

    max_new_tokens: int = 256
    top_p: float = 0.01
    temperature: float = 1.0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0 or self.top_p <= 0


@dataclass(frozen=True)
class ModelConfig:
    """Where the three released files live, how to get them, and how to run them."""

    name: str
    imagebind_path: Path
    vicuna_dir: Path
    delta_path: Path
    get_weights: str = "python -m pandagpt_demo.weights make-tiny checkpoints/tiny"  # the one command
    weight_sources: str = "random weights made locally"  # where that command fetches from
    imagebind: ImageBindArch = field(default_factory=ImageBindArch)
    lora: LoraSpec = field(default_factory=LoraSpec)
    prompt: PromptTemplate = field(default_factory=PromptTemplate)
    special_tokens: SpecialTokens = field(default_factory=SpecialTokens)
    context_length: int = 2048  # Vicuna v0's training context
    device: str = "cpu"
    dtype: str = "auto"  # auto: float16 on CUDA (as the original), float32 on CPU
    merge_lora: bool = True  # ignored when quantized: the LoRA then runs beside the 8/4-bit weights
    compile: bool = True  # on CUDA, a lone request decodes in a static cache compiled into CUDA graphs
    quantize: str | None = None  # "8bit" or "4bit" (bitsandbytes): 13B fits in 24 GB, 7B in 12 GB

    @classmethod
    def tiny(cls, directory: Path | str) -> "ModelConfig":
        """The layout `make-tiny DIR` writes: the released file names, tiny contents."""
        root = Path(directory)
        return cls(
            name="tiny",
            imagebind_path=root / "imagebind_huge.pth",
            vicuna_dir=root / "vicuna_tiny",
            delta_path=root / "pandagpt_tiny" / "pytorch_model.pt",
            imagebind=ImageBindArch.tiny(),
            get_weights=f"python -m pandagpt_demo.weights make-tiny {root}",
        )

    def how_to_get(self) -> str:
        """The fix command and the sources it uses, for error messages."""
        return f"{self.get_weights} ({self.weight_sources})"

    @classmethod
    def preset(cls, size: str, checkpoints_dir: Path | str = "checkpoints", **overrides: object) -> "ModelConfig":
        """The file layout `python -m pandagpt_demo.weights` writes, for one model size."""
        root = Path(checkpoints_dir)
        if size == "tiny":
            base = cls.tiny(root / "tiny")
        elif size in ("7b", "13b"):
            base = cls(
                name=size,
                imagebind_path=root / "imagebind_huge.pth",
                vicuna_dir=root / f"vicuna_{size}_v0",
                delta_path=root / f"pandagpt_{size}" / "pytorch_model.pt",
                get_weights=f"python -m pandagpt_demo.weights download --model {size} --dir {shlex.quote(str(root))}",
                weight_sources=(
                    f"ImageBind from {IMAGEBIND_URL}, Vicuna v0 from the Hub repo {WEIGHT_SOURCES[size].vicuna}, "
                    f"PandaGPT's delta from {WEIGHT_SOURCES[size].pandagpt_delta}; see README, 'Get the real weights'"
                ),
            )
        else:
            raise ValueError(f"unknown model size {size!r}; choose one of {', '.join(MODEL_SIZES)}")
        return replace(base, **overrides)  # type: ignore[arg-type]
