"""The LLM with int8/int4 weights on the CPU, never held in full precision.

A first start quantizes each linear layer's weight as it streams from the checkpoint: read in
float32, the LoRA's update added (one rounding of the merged weight, not two), rounded, dropped.
Everything else (embeddings, norms) is read in the compute dtype. The result goes to the cache
(`quantized_cache`), which later starts read in seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from pandagpt_demo.config import LoraSpec, ModelConfig

from .checkpoints import check_keys, check_llm_keys, lora_shapes
from .quantized import Scheme, empty_quantized_linear, quantized_linear, quantized_targets, swap_module
from .quantized_cache import QuantizedCache
from .tensorfiles import FolderTensors, weight_files

log = logging.getLogger(__name__)
PEFT_PREFIX = "base_model.model."  # peft's names of the wrapped model's modules


def load_quantized_llm(
    model_class: type[nn.Module],
    llm_config: object,
    tensors: FolderTensors,
    lora: dict[str, torch.Tensor],
    config: ModelConfig,
    dtype: torch.dtype,
    detail: Callable[[str], None],
) -> nn.Module:
    """The LLM with the LoRA merged and its linear layers quantized (`config.run.quantize`), from the cache if it is fresh."""
    from accelerate import init_empty_weights

    scheme = Scheme.named(config.run.quantize)
    with init_empty_weights():
        llm = model_class._from_config(llm_config, dtype=dtype)
    expected = check_llm_keys(llm, tensors, config)
    updates = lora_updates(lora, llm_config, config.spec.lora, config.files.delta_path)
    cache = QuantizedCache(config.files.quantized_dir(config.run.quantize))
    identity = cache_identity(scheme, dtype, config.spec.lora)
    sources = source_files(config)
    detail(f"looking for quantized weights in {cache.folder}")
    targets, head = quantized_targets(llm), _head_name(llm)
    state = cache.read(identity, sources, config.run.device)
    if state is None:
        state = _quantize(expected, set(targets), head, tensors, updates, scheme, config, dtype, detail)
        detail(f"writing the quantized weights to {cache.folder} (once)")
        try:
            cache.write(state, identity, sources)
        except OSError as error:  # a read-only or full disk: serve anyway, quantize again next time
            log.warning("could not write the quantized cache %s: %s; the next start quantizes again", cache.folder, error)
    else:
        log.info("quantized weights read from %s", cache.folder)
    for name in targets:
        swap_module(llm, name, empty_quantized_linear(llm.get_submodule(name), dtype, scheme.bits_of(name, head), scheme.group_size))
    llm.load_state_dict(state, assign=True, strict=True)
    return llm


def _quantize(
    expected: list[str],
    targets: set[str],
    head: str,
    tensors: FolderTensors,
    updates: dict[str, tuple[torch.Tensor, torch.Tensor]],
    scheme: Scheme,
    config: ModelConfig,
    dtype: torch.dtype,
    detail: Callable[[str], None],
) -> dict[str, torch.Tensor]:
    """Every tensor of the LLM, its linear layers (`targets`, `head` the output one) merged with their LoRA
    and rounded, one at a time."""
    scaling = config.spec.lora.alpha / config.spec.lora.r
    state: dict[str, torch.Tensor] = {}
    label = f"quantizing Vicuna to {scheme.bits} bits"
    with tqdm(total=len(expected), desc=label, unit="tensor", leave=False) as bar:
        for number, key in enumerate(expected, start=1):
            module_name, _, kind = key.rpartition(".")
            if module_name in targets and kind == "weight":
                weight = tensors.take(key, "cpu", torch.float32)
                if module_name in updates:
                    a, b = updates[module_name]
                    weight += (b.float() @ a.float()) * scaling
                bias_key = f"{module_name}.bias"
                bias = tensors.take(bias_key, "cpu", torch.float32) if bias_key in tensors else None
                layer = quantized_linear(weight, bias, dtype, scheme.bits_of(module_name, head), scheme.group_size)
                state.update({f"{module_name}.{name}": value.to(config.run.device) for name, value in layer.state_dict().items()})
                del weight, layer
            elif not (module_name in targets and kind == "bias"):
                state[key] = tensors.take(key, config.run.device, dtype)
            bar.update(1)
            if number % 16 == 0 or number == len(expected):
                detail(f"{label}: {100 * number // len(expected)}%")
    return state


def _head_name(llm: nn.Module) -> str:
    """The output layer's module name (`lm_head` in LLaMA), found as the model names it."""
    head = llm.get_output_embeddings()
    return next(name for name, module in llm.named_modules() if module is head)


def lora_updates(lora: dict[str, torch.Tensor], llm_config: object, spec: LoraSpec, path: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The delta's LoRA as module name -> (A, B), every key checked against peft's wrapping of this model."""
    check_keys(path, "PandaGPT delta (LoRA part)", lora_shapes(llm_config, spec), lora)
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in lora.items():  # base_model.model.<module>.lora_A.default.weight
        module_name, _, rest = key.removeprefix(PEFT_PREFIX).rpartition(".lora_")
        parts.setdefault(module_name, {})[rest.split(".")[0]] = tensor
    return {name: (pair["A"], pair["B"]) for name, pair in parts.items()}


def cache_identity(scheme: Scheme, dtype: torch.dtype, lora: LoraSpec) -> dict[str, object]:
    """What, besides the source files, decides the cached tensors' values and layout."""
    return {
        "scheme": scheme.as_dict(),
        "dtype": str(dtype).removeprefix("torch."),
        "lora": {"r": lora.r, "alpha": lora.alpha, "target_modules": list(lora.target_modules)},
        "torch": torch.__version__,
        "cpu": torch.backends.cpu.get_cpu_capability(),
    }


def source_files(config: ModelConfig) -> list[Path]:
    """The files the quantized weights are made from: Vicuna's config and weights, and PandaGPT's delta."""
    folder = config.files.vicuna_dir
    index, names = weight_files(folder)
    listed = [folder / "config.json", *(folder / name for name in names)]
    if index is not None:
        listed.append(index)
    return [*listed, config.files.delta_path]
