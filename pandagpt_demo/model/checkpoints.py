"""Loading the three released files as they are, failing loudly on anything unexpected.

- `imagebind_huge.pth`: ImageBind's state dict, loaded strictly.
- a Vicuna v0 folder in Hugging Face format: config, weights, tokenizer; every weight file must be
  readable, every tensor the model needs present (transformers would leave a missing one random)
  and no other (old checkpoints' rotary buffers aside), as `weights check` demands.
- PandaGPT's delta `pytorch_model.pt`: `llama_proj.{weight,bias}` plus LoRA tensors named
  `llama_model.base_model.model.model.layers.N.self_attn.X_proj.lora_{A,B}[.default].weight`.
  The original loads it with `strict=False`, so a wrong file silently gives nonsense; here every
  missing or unexpected key is an error, and so is a LoRA tensor given under both names.

Every weight goes straight to the run's device and dtype as it is read (`tensorfiles`): modules are
built without weights and filled tensor by tensor, so the host never holds a weight twice (a model
built in float32, then loaded, then cast, then moved, did: 22.2 GB of host memory to load 7B to a GPU,
see README, "Loading and host memory").
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pandagpt_demo.config import LoraSpec, ModelConfig, SpecialTokens
from pandagpt_demo.errors import CheckpointError

from .encoder import ImageBindEncoder
from .tensorfiles import FolderTensors, TensorFile, UnreadableFile, weight_files

DELTA_LLM_PREFIX = "llama_model."
PROJ_KEYS = ("llama_proj.weight", "llama_proj.bias")
TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json")  # either holds the vocabulary
SHOWN_KEYS = 5  # keys named in an error message; the rest are counted
IGNORED_LLM_KEYS = ("rotary_emb.inv_freq",)  # buffers in old checkpoints; the model computes them
DEFERRED_TOWER = "text"  # ImageBind's tower read on first use on the CPU (zero-shot labels only)


def _require(path: Path, what: str, config: ModelConfig) -> None:
    if not path.exists():
        raise CheckpointError(f"{what} not found at '{path}'. Get it: {config.files.how_to_get()}")


def _open_state_dict(path: Path, what: str) -> TensorFile:
    """A torch state dict file, memory-mapped (read as its tensors are taken)."""
    try:
        return TensorFile(path)
    except UnreadableFile as error:
        raise CheckpointError(f"{what} at '{path}' is not a readable torch state dict: {error}") from error


def _meta_tensors(file: TensorFile | FolderTensors) -> dict[str, torch.Tensor]:
    """The file's (or folder's) tensors as shapes only, for `check_keys` before anything is read."""
    return {key: torch.empty(file.shape(key), device="meta") for key in file.keys()}


def check_keys(path: Path, what: str, expected: dict[str, torch.Size], given: dict[str, torch.Tensor]) -> None:
    """Compare key sets and shapes; name every difference (a few of each) in one error."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    wrong = [
        f"{k}: file {tuple(given[k].shape)}, model {tuple(expected[k])}"
        for k in sorted(set(expected) & set(given))
        if tuple(given[k].shape) != tuple(expected[k])
    ]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong)):
        if items:
            problems.append(f"{len(items)} {label}: {_some(items)}")
    if problems:
        raise CheckpointError(
            f"{what} at '{path}' does not match the model: " + "; ".join(problems),
            path=path,
            missing=tuple(missing),
            unexpected=tuple(unexpected),
            mismatched=tuple(wrong),
        )


def _some(items: list[str]) -> str:
    """The first few items, and how many more there are."""
    more = len(items) - SHOWN_KEYS
    return ", ".join(items[:SHOWN_KEYS]) + (f" (+{more} more)" if more > 0 else "")


def load_imagebind(config: ModelConfig, dtype: torch.dtype) -> ImageBindEncoder:
    """ImageBind on the run device in `dtype`, each tensor cast as it is read: built without weights
    first, never whole in float32 (the checkpoint's dtype) beside a second copy from the file.

    On the CPU its text tower (`DEFERRED_TOWER`) is read only when labels are first asked for:
    host memory is the CPU's limit, and a chat without labels never needs it.
    """
    from accelerate import init_empty_weights

    path = config.files.imagebind_path
    device = config.run.device
    _require(path, "ImageBind checkpoint", config)
    with init_empty_weights():  # parameters on `meta`; not torch.device("meta"): ImageBind's init calls .item()
        encoder = ImageBindEncoder(config.spec.imagebind)
    defer = torch.device(device).type == "cpu"
    with _open_state_dict(path, "ImageBind checkpoint") as file:
        expected = {k: v.shape for k, v in encoder.model.state_dict().items()}
        check_keys(path, "ImageBind checkpoint", expected, _meta_tensors(file))
        later = [key for key in file.keys() if defer and encoder.tower_of(key) == DEFERRED_TOWER]
        now = [key for key in file.keys() if key not in set(later)]
        encoder.model.load_state_dict({key: file.take(key, device, dtype) for key in now}, strict=not later, assign=True)
    if later:
        encoder.defer(DEFERRED_TOWER, lambda: _read_tensors(path, later, device, dtype))
    return encoder.place(device, dtype)  # moves nothing already in place: only buffers a checkpoint does not hold


def _read_tensors(path: Path, keys: list[str], device: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Some tensors of a state-dict file, on `device` in `dtype`."""
    with _open_state_dict(path, "ImageBind checkpoint") as file:
        return {key: file.take(key, device, dtype) for key in keys}


def _quantization(config: ModelConfig, dtype: torch.dtype) -> dict:
    """from_pretrained arguments that load the LLM in 8 or 4 bits with bitsandbytes (on a GPU)."""
    from transformers import BitsAndBytesConfig

    if config.run.quantize == "8bit":
        quantization = BitsAndBytesConfig(load_in_8bit=True)
    elif config.run.quantize == "4bit":
        quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)
    else:
        raise ValueError(f"unknown quantization {config.run.quantize!r}; use 8bit or 4bit")
    return {"quantization_config": quantization}


def load_tokenizer(folder: Path, tokens: SpecialTokens = SpecialTokens()):
    """LLaMA's SentencePiece tokenizer, by class as the original did (`LlamaTokenizer`).

    Not `AutoTokenizer`: Vicuna v0 folders name the class `LLaMATokenizer`, which transformers no
    longer knows, and falls back to a generic tokenizer without SentencePiece's leading-space rule,
    so every prompt would be tokenized differently from training. The special tokens are named
    here, not read from the folder (see `SpecialTokens`); naming them would silently *add* any the
    vocabulary lacks, and a folder without tokenizer files would give a vocabulary of just those,
    so both are refused (FileNotFoundError, ValueError), naming the folder.
    """
    from transformers import LlamaTokenizer

    folder = Path(folder)
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise FileNotFoundError(f"'{folder}' has no tokenizer: neither {' nor '.join(TOKENIZER_FILES)} is there")
    tokenizer = LlamaTokenizer.from_pretrained(folder, unk_token=tokens.unk, bos_token=tokens.bos, eos_token=tokens.eos)
    _require_control_pieces(tokenizer, folder, tokens)
    tokenizer.pad_token = tokenizer.eos_token  # as the original: pad = eos
    return tokenizer


def _require_control_pieces(tokenizer, folder: Path, tokens: SpecialTokens) -> None:
    """<unk>, <s>, </s> must be the folder's own pieces 0, 1, 2; a piece added by naming it gets an id past the vocabulary."""
    own = tokenizer.backend_tokenizer.get_vocab_size(with_added_tokens=False)
    problems = []
    for field_name, piece, expected in tokens.pieces():
        found = tokenizer.convert_tokens_to_ids(piece)
        if found is None or found >= own:
            problems.append(f"{field_name} {piece!r} is not in its vocabulary of {own} pieces")
        elif found != expected:
            problems.append(f"{field_name} {piece!r} has id {found}, LLaMA's has {expected}")
    if problems:
        raise ValueError(f"the tokenizer in '{folder}' is not LLaMA's: {'; '.join(problems)}")


def _require_readable_shards(folder: Path, config: ModelConfig) -> None:
    """Open every weight file's header before transformers does: a truncated download would
    otherwise fail deep inside it with a bare RuntimeError or SafetensorError naming no file."""
    try:
        index, names = weight_files(folder)
    except UnreadableFile as error:
        raise CheckpointError(f"Vicuna folder '{folder}': {error}; download it again. Get it: {config.files.how_to_get()}") from error
    for name in names:
        path = folder / name
        _require(path, f"Vicuna weight shard (listed in {index.name})" if index else "Vicuna weight file", config)
        try:
            TensorFile(path)
        except UnreadableFile as error:
            raise CheckpointError(
                f"Vicuna weight shard '{path}' is truncated or corrupt ({error}); download it again. Get it: {config.files.how_to_get()}"
            ) from error


def load_vicuna(
    config: ModelConfig,
    dtype: torch.dtype,
    lora: dict[str, torch.Tensor] | None = None,
    detail: Callable[[str], None] = lambda message: None,
) -> tuple[nn.Module, object]:
    """The base LLM and its tokenizer from a Hugging Face folder, every tensor of the model loaded from it.

    Quantized on the CPU (`config.run.quantize`), the delta's `lora` is merged into the weights
    before they are rounded (quantized_load.py), and `detail` hears the quantizing's progress.

    Not `from_pretrained(folder)`: transformers memory-maps the weight files and keeps every page it
    touched mapped to the end, so the whole file would sit in host memory beside the model on the
    CPU, or on its way to a GPU; and it reads them in threads of its own, where a ZeroGPU Space
    cannot put a tensor on "cuda" (only the thread that imported `spaces` can, app/space/zerogpu.py).
    """
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING, AutoConfig

    from .quantized_load import load_quantized_llm

    folder = config.files.vicuna_dir
    _require(folder / "config.json", "Vicuna folder (config.json)", config)
    _require_readable_shards(folder, config)
    try:
        tokenizer = load_tokenizer(folder, config.spec.special_tokens)
        llm_config = AutoConfig.from_pretrained(folder)
        model_class = MODEL_FOR_CAUSAL_LM_MAPPING[type(llm_config)]
        with FolderTensors(folder) as tensors:
            if config.run.quantize is None:
                llm = _stream_llm(model_class, llm_config, tensors, config, dtype)
            elif config.run.quantized_on_cpu:
                if lora is None:
                    raise TypeError("quantizing on the CPU merges the LoRA first: pass the delta's")
                llm = load_quantized_llm(model_class, llm_config, tensors, lora, config, dtype, detail)
            else:
                llm = _quantized_llm(model_class, llm_config, tensors, config, dtype)
    except (OSError, ValueError, KeyError) as error:  # KeyError: a config of no causal LM; UnreadableFile is a ValueError
        raise CheckpointError(f"Vicuna folder '{folder}' could not be loaded: {error}. Get it: {config.files.how_to_get()}") from error
    llm.eval().requires_grad_(False)
    return llm, tokenizer


def _stream_llm(model_class: type[nn.Module], llm_config: object, tensors: FolderTensors, config: ModelConfig, dtype: torch.dtype) -> nn.Module:
    """The LLM built with its parameters on `meta`, then given each tensor of the folder on the run
    device in `dtype`, one at a time in this thread."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        llm = model_class._from_config(llm_config, dtype=dtype)
    expected = check_llm_keys(llm, tensors, config)
    llm.load_state_dict({key: tensors.take(key, config.run.device, dtype) for key in expected}, assign=True)
    return llm


def check_llm_keys(llm: nn.Module, tensors: FolderTensors, config: ModelConfig) -> list[str]:
    """The keys of `llm` (built on `meta`), checked against the folder as `weights check` checks them:
    every tensor of the model present with its shape, nothing else but the rotary buffers of old
    checkpoints (which the model computes itself, like every buffer the checkpoint does not hold)."""
    expected = {key: value.shape for key, value in llm.state_dict().items()}
    _require_all(config, sorted(set(expected) - set(tensors.keys())))
    given = {key: tensor for key, tensor in _meta_tensors(tensors).items() if not key.endswith(IGNORED_LLM_KEYS)}
    check_keys(tensors.folder, "The Vicuna folder", expected, given)
    return list(expected)


def _quantized_llm(model_class: type[nn.Module], llm_config: object, tensors: FolderTensors, config: ModelConfig, dtype: torch.dtype) -> nn.Module:
    """The LLM in 8 or 4 bits on a GPU through transformers' `from_pretrained` and bitsandbytes, which quantizes each weight as it
    is placed (in this thread: it does not read in threads while it quantizes), given the folder's
    tensors as deferred ones that read themselves to the device (`FolderTensors.deferred`)."""
    llm, info = model_class.from_pretrained(
        None,
        config=llm_config,
        state_dict=tensors.deferred(config.run.device, dtype),
        dtype=dtype,
        device_map={"": config.run.device},
        output_loading_info=True,
        **_quantization(config, dtype),
    )
    _require_all(config, sorted(info["missing_keys"]))  # transformers initialises them randomly and only warns
    return llm


def _require_all(config: ModelConfig, missing: list[str]) -> None:
    if missing:
        raise CheckpointError(
            f"Vicuna folder '{config.files.vicuna_dir}' lacks {len(missing)} of the model's tensors ({_some(missing)}): an incomplete "
            f"download or a folder for another model. Get it again: {config.files.how_to_get()}"
        )


@dataclass
class Delta:
    """PandaGPT's trained weights, with LoRA keys in the naming of the installed peft."""

    llama_proj: dict[str, torch.Tensor]
    lora: dict[str, torch.Tensor]


def peft_key(delta_key: str) -> str:
    """`llama_model.X.lora_A.weight` or `...lora_A.default.weight` -> peft's `X.lora_A.default.weight`."""
    key = delta_key.removeprefix(DELTA_LLM_PREFIX)
    for part in ("lora_A", "lora_B"):
        key = key.replace(f".{part}.weight", f".{part}.default.weight")
    return key


def peft_keys(delta_keys: Iterable[str], path: Path) -> dict[str, str]:
    """The delta's LoRA keys -> peft's names; one tensor given under both spellings is an error, not a silent pick."""
    named: dict[str, str] = {}
    for key in delta_keys:
        if key in PROJ_KEYS:
            continue
        target = peft_key(key)
        if target in named:
            raise CheckpointError(
                f"PandaGPT delta at '{path}' holds the same LoRA tensor twice, as '{named[target]}' and '{key}' "
                "(with and without '.default'): keep one of them"
            )
        named[target] = key
    return {key: target for target, key in named.items()}


def read_delta(config: ModelConfig) -> Delta:
    """The delta's tensors, memory-mapped: read when they are copied into the model, then let go with it."""
    path = config.files.delta_path
    _require(path, "PandaGPT delta", config)
    with _open_state_dict(path, "PandaGPT delta") as file:
        state = {key: file.get(key) for key in file.keys()}
    llama_proj = {k: state[k] for k in PROJ_KEYS if k in state}
    lora = {target: state[key] for key, target in peft_keys(state, path).items()}
    missing_proj = [k for k in PROJ_KEYS if k not in state]
    if missing_proj:
        raise CheckpointError(f"PandaGPT delta at '{path}' lacks {', '.join(missing_proj)}; is it the right file?")
    return Delta(llama_proj=llama_proj, lora=lora)


def wrap_lora(llm: nn.Module, spec: LoraSpec) -> nn.Module:
    """Wrap `llm` with peft LoRA layers of PandaGPT's shape (weights still to be loaded)."""
    # peft imports bitsandbytes, whose CPU backend warns that a 4-bit kernel it would fetch from the
    # Hub is missing; this app uses bitsandbytes only on CUDA (the CPU's int4 is quantized.py's).
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    from peft import LoraConfig, get_peft_model

    lora_config = LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=list(spec.target_modules),
        task_type="CAUSAL_LM",
        inference_mode=True,
    )
    with warnings.catch_warnings():
        # peft asks transformers for a property transformers renamed; the warning names no setting of ours.
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        return get_peft_model(llm, lora_config).eval()


def lora_shapes(llm_config: object, spec: LoraSpec) -> dict[str, torch.Size]:
    """The LoRA keys and shapes (peft's names) of the LLM `llm_config` describes, from a `meta` model: what `load_lora` demands."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        llm = AutoModelForCausalLM.from_config(llm_config)
    return {key: value.shape for key, value in wrap_lora(llm, spec).state_dict().items() if ".lora_" in key}


def load_lora(model: nn.Module, lora_state: dict[str, torch.Tensor], path: Path) -> None:
    """Load the delta's LoRA tensors into a wrapped model, every one accounted for."""
    expected = {k: v.shape for k, v in model.state_dict().items() if ".lora_" in k}
    check_keys(path, "PandaGPT delta (LoRA part)", expected, lora_state)
    model.load_state_dict(lora_state, strict=False)  # base weights come from Vicuna; LoRA keys checked above


def load_llama_proj(delta: Delta, encoder_dim: int, hidden_size: int, path: Path) -> nn.Linear:
    proj = nn.Linear(encoder_dim, hidden_size)  # on the CPU in float32, then moved: 4 M parameters at 7B, not worth streaming
    expected = {f"llama_proj.{k}": v.shape for k, v in proj.state_dict().items()}
    check_keys(path, "PandaGPT delta (llama_proj)", expected, delta.llama_proj)
    proj.load_state_dict({k.removeprefix("llama_proj."): v for k, v in delta.llama_proj.items()})
    return proj.eval().requires_grad_(False)
