"""A load measured in a process of its own (run by test_load_memory.py): how far loading a model set
raised the process's peak resident memory, against the model's own size, as one JSON line.

    python -m tests.model.measure_load WARM_DIR MODEL_DIR DTYPE

Its own process, because the kernel's high-water mark (VmHWM) never comes down: in the test
process it would hold every earlier test's peak. The tiny set in WARM_DIR is loaded first, so the
imports and allocator pools that any first load brings are in the baseline, not in the figure.
"""

from __future__ import annotations

import gc
import itertools
import json
import sys
from pathlib import Path

from pandagpt_demo.config import ImageBindArch, LlamaShape, ModelConfig
from pandagpt_demo.model.pandagpt import PandaGPT

# A few hundred MB: big enough that holding the weights twice stands far above the process's own
# noise, small enough to write and load in seconds.
MID_LLAMA = LlamaShape(hidden_size=1024, intermediate_size=2816, num_hidden_layers=8, num_attention_heads=8)
MID_IMAGEBIND = ImageBindArch(
    out_embed_dim=384,
    **{
        f"{tower}_{field}": value
        for tower in ("vision", "text", "audio", "depth", "thermal", "imu")
        for field, value in (("embed_dim", 384), ("num_blocks", 2), ("num_heads", 6))
    },
)


def mid_config(directory: Path | str) -> ModelConfig:
    """The mid-size set's layout: the tiny set's file names, these shapes."""
    return ModelConfig.tiny(directory).updated(imagebind=MID_IMAGEBIND)


def model_bytes(model: PandaGPT) -> int:
    """The model's own size: every parameter and buffer of its three parts."""
    parts = (model.encoder, model.llama_proj, model.llm)
    return sum(t.numel() * t.element_size() for part in parts for t in itertools.chain(part.parameters(), part.buffers()))


def largest_tensor_bytes(model: PandaGPT) -> int:
    """The largest single weight: cast on its way in, it is the one held twice for a moment."""
    parts = (model.encoder, model.llama_proj, model.llm)
    return max(t.numel() * t.element_size() for part in parts for t in itertools.chain(part.parameters(), part.buffers()))


def memory() -> dict[str, int]:
    """VmRSS and VmHWM (the peak) of this process, in bytes."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {name: int(fields[name].split()[0]) * 1024 for name in ("VmRSS", "VmHWM")}


def main(argv: list[str]) -> None:
    warm_dir, model_dir, dtype = argv
    PandaGPT.load(ModelConfig.tiny(warm_dir))
    gc.collect()
    before = memory()
    model = PandaGPT.load(mid_config(model_dir).updated(dtype=dtype))
    after = memory()
    numbers = {
        "rss_before": before["VmRSS"],
        "peak_rss": after["VmHWM"],
        "model_bytes": model_bytes(model),
        "largest_bytes": largest_tensor_bytes(model),
    }
    print(json.dumps(numbers))


if __name__ == "__main__":
    main(sys.argv[1:])
