"""The host memory a model set takes on the CPU at each precision, from its shapes alone.

Known before any weight is read (the released sizes' shapes are in `LLAMA_SHAPES`), so the app can
choose a precision that fits, or refuse one that cannot, before loading for minutes and being
killed by the kernel's out-of-memory killer halfway.
"""

from __future__ import annotations

from dataclasses import dataclass

from pandagpt_demo.config import ImageBindArch, LlamaShape

from .checkpoints import DEFERRED_TOWER
from .encoder import ImageBindEncoder, imagebind_shapes
from .quantized import Scheme

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class Precision:
    """How the model runs on the CPU: the compute dtype, and the LLM's linear layers' bits (None: that dtype)."""

    dtype: str
    quantize: str | None = None

    @property
    def label(self) -> str:
        return self.quantize or self.dtype


CPU_PRECISIONS = (  # largest first: the app takes the first that fits
    Precision("float32"),
    Precision("bfloat16"),
    Precision("bfloat16", "8bit"),
    Precision("bfloat16", "4bit"),
)


def llm_bytes(shape: LlamaShape, precision: Precision) -> int:
    """The LLM's weights: its linear layers at the precision's bits, embeddings and norms in its dtype."""
    element = DTYPE_BYTES[precision.dtype]
    hidden, inner, layers, vocab = shape.hidden_size, shape.intermediate_size, shape.num_hidden_layers, shape.vocab_size
    linear = layers * (4 * hidden * hidden + 3 * hidden * inner)
    head = vocab * hidden
    others = vocab * hidden + (2 * layers + 1) * hidden  # embeddings, norms
    if precision.quantize is None:
        return (linear + head + others) * element
    scheme = Scheme.named(precision.quantize)
    return int(
        _quantized_bytes(linear, hidden, scheme.bits, scheme.group_size, element) + _quantized_bytes(head, hidden, scheme.head_bits, 0, element)
    ) + (others * element)


def _quantized_bytes(weights: int, in_features: int, bits: int, group_size: int, element: int) -> float:
    """Codes, plus int8's scale per row or int4's scale and zero per group."""
    if bits == 8:
        return weights + weights / in_features * element
    return weights / 2 + weights / group_size * 2 * element


def imagebind_bytes(arch: ImageBindArch, precision: Precision) -> int:
    """ImageBind's towers loaded at start on the CPU (all but the deferred text tower), in the precision's dtype."""
    shapes = imagebind_shapes(arch)
    loaded = sum(shape.numel() for key, shape in shapes.items() if ImageBindEncoder.tower_of(key) != DEFERRED_TOWER)
    return loaded * DTYPE_BYTES[precision.dtype]


def kv_bytes_per_token(shape: LlamaShape, precision: Precision) -> int:
    """One token's keys and values in every layer (the KV cache is in the compute dtype whatever the weights)."""
    return 2 * shape.num_hidden_layers * shape.hidden_size * DTYPE_BYTES[precision.dtype]
