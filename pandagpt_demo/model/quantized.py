"""Weight-only int8 and int4 linear layers for the CPU, on PyTorch's own packed kernels.

Batch-1 decoding reads every weight once per token, so on a CPU its speed is the memory bandwidth
divided by the weights' bytes: int8 halves them against bfloat16, int4 quarters them. The matmuls
are PyTorch's (`torch._weight_int8pack_mm`, `torch._weight_int4pack_mm_for_cpu`); this module only
rounds the weights into the layouts those kernels read.

- int8: symmetric, one scale per output row (`w ≈ q · s`, q in -127..127).
- int4: asymmetric, one scale and one offset per `group_size` inputs of a row (`w ≈ min + q · s`,
  q in 0..15). The group is 32, the smallest of the usual 32-128: it follows the weights most
  closely (a fifth less rounding error than 128), for 0.6 GB more at 7B and a few percent of decode
  speed (README, "On a CPU", has the figures).
- The output layer (`lm_head`) stays int8 in the int4 scheme: it picks every token, and its errors
  go straight into the logits (llama.cpp's 4-bit types keep it at 6 bits, for the same reason).

Layers are made from full-precision weights (`from_weight`, one rounding; the LoRA already merged by
the caller) or empty, for a checkpoint of them to fill (`empty_quantized_linear`: `state_dict` holds
only integer codes and scales).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

INT4_LEVELS = 15  # codes 0..15
INT4_KERNEL_OFFSET = 8  # the int4 kernel computes (q - 8) · scale + zero: the zero it is given is min + 8 · scale
INT8_LEVELS = 127  # codes -127..127 (symmetric: -128 unused)


@dataclass(frozen=True)
class Scheme:
    """How an LLM's linear layers are rounded; part of a quantized cache's identity (`quantized_cache`)."""

    bits: int  # 8 or 4: every linear layer of the decoder
    group_size: int = 32  # int4: inputs sharing one scale and offset
    head_bits: int = 8  # the output layer (lm_head)
    version: int = 1  # of the layouts below; a change makes older caches stale

    @classmethod
    def named(cls, setting: str) -> Scheme:
        """The scheme of a `--quantize` setting: "8bit" or "4bit"."""
        bits = {"8bit": 8, "4bit": 4}.get(setting)
        if bits is None:
            raise ValueError(f"unknown quantization {setting!r}; use 8bit or 4bit")
        return cls(bits=bits)

    def bits_of(self, module_name: str, head_name: str) -> int:
        return self.head_bits if module_name == head_name else self.bits

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _rows(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(..., K) -> (M, K) contiguous in the kernels' dtype (that of the scales)."""
    return x.reshape(-1, x.shape[-1]).to(dtype).contiguous()


class Int8Linear(nn.Module):
    """y = x · (q · s)ᵀ (+ b): int8 codes (out, in), one scale per output row."""

    def __init__(self, in_features: int, out_features: int, dtype: torch.dtype, bias: bool = False) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight_int8", torch.empty(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scales", torch.empty(out_features, dtype=dtype))
        self.register_buffer("bias", torch.empty(out_features, dtype=dtype) if bias else None)

    @classmethod
    def from_weight(cls, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype) -> Int8Linear:
        weight = weight.float()
        layer = cls(weight.shape[1], weight.shape[0], dtype, bias is not None)
        scales = (weight.abs().amax(dim=1) / INT8_LEVELS).clamp(min=torch.finfo(dtype).tiny).to(dtype)  # as the kernel will read them
        layer.weight_int8 = torch.round(weight / scales.float()[:, None]).clamp(-INT8_LEVELS, INT8_LEVELS).to(torch.int8)
        layer.scales = scales
        if bias is not None:
            layer.bias = bias.to(dtype)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch._weight_int8pack_mm(_rows(x, self.scales.dtype), self.weight_int8, self.scales)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)


class Int4Linear(nn.Module):
    """y = x · ((q - 8) · s + z)ᵀ (+ b) per group of inputs: 4-bit codes packed for the CPU kernel.

    The packed layout is the kernel's own (`torch._convert_weight_to_int4pack_for_cpu`) and depends
    on the CPU's vector width and torch's version: a cache of it records both (`quantized_cache`).
    """

    def __init__(self, in_features: int, out_features: int, dtype: torch.dtype, group_size: int, bias: bool = False) -> None:
        super().__init__()
        if in_features % group_size:
            raise ValueError(f"int4 groups of {group_size} do not divide {in_features} inputs")
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        self.register_buffer("weight_int4", torch.empty(out_features, in_features // 2, dtype=torch.uint8))
        self.register_buffer("scales_and_zeros", torch.empty(in_features // group_size, out_features, 2, dtype=dtype))
        self.register_buffer("bias", torch.empty(out_features, dtype=dtype) if bias else None)

    @classmethod
    def from_weight(cls, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype, group_size: int) -> Int4Linear:
        out_features, in_features = weight.shape
        layer = cls(in_features, out_features, dtype, group_size, bias is not None)
        codes, scales, zeros = quantize_int4(weight, group_size, dtype)
        layer.weight_int4 = torch._convert_weight_to_int4pack_for_cpu(codes, 1)
        layer.scales_and_zeros = torch.stack([scales.t(), zeros.t()], dim=-1).contiguous()
        if bias is not None:
            layer.bias = bias.to(dtype)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch._weight_int4pack_mm_for_cpu(_rows(x, self.scales_and_zeros.dtype), self.weight_int4, self.group_size, self.scales_and_zeros)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)


def quantize_int4(weight: torch.Tensor, group_size: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Codes (out, in) int32 in 0..15, and per group (out, in / group) a scale and a zero in `dtype`,
    in the kernel's convention: w ≈ (q - 8) · scale + zero. The scale spans the group's min..max in
    15 steps; scale and zero are rounded to `dtype` first and the codes chosen for the rounded ones,
    so each weight is at most half a step from its value as the kernel computes it."""
    out_features, in_features = weight.shape
    groups = weight.float().reshape(out_features, in_features // group_size, group_size)
    minima = groups.amin(dim=-1)
    scales = ((groups.amax(dim=-1) - minima) / INT4_LEVELS).clamp(min=torch.finfo(dtype).tiny).to(dtype)
    zeros = (minima + INT4_KERNEL_OFFSET * scales.float()).to(dtype)
    shifted = (groups - zeros.float()[..., None]) / scales.float()[..., None] + INT4_KERNEL_OFFSET
    codes = torch.round(shifted).clamp(0, INT4_LEVELS)
    return codes.reshape(out_features, in_features).to(torch.int32), scales, zeros


def quantized_linear(weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype, bits: int, group_size: int) -> nn.Module:
    """A full-precision weight rounded once into the layer of `bits`."""
    if bits == 8:
        return Int8Linear.from_weight(weight, bias, dtype)
    if bits == 4:
        return Int4Linear.from_weight(weight, bias, dtype, group_size)
    raise ValueError(f"no {bits}-bit layer; use 8 or 4")


def empty_quantized_linear(linear: nn.Linear, dtype: torch.dtype, bits: int, group_size: int) -> nn.Module:
    """An unfilled layer of `linear`'s shape, for a quantized checkpoint's tensors."""
    has_bias = linear.bias is not None
    if bits == 8:
        return Int8Linear(linear.in_features, linear.out_features, dtype, has_bias)
    return Int4Linear(linear.in_features, linear.out_features, dtype, group_size, has_bias)


def quantized_targets(llm: nn.Module) -> list[str]:
    """The names of the LLM's linear layers: every one of its decoder and its output layer."""
    return [name for name, module in llm.named_modules() if isinstance(module, nn.Linear)]


def swap_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)
