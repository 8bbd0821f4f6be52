"""Choosing the precision on the CPU from the memory there is (app/precision.py, runtime.cpu_precision)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from pandagpt_demo.app import precision
from pandagpt_demo.app.precision import DoesNotFit, available_memory, choose, needs_of, require
from pandagpt_demo.app.runtime import add_model_arguments, cpu_precision, model_config
from pandagpt_demo.config import LLAMA_SHAPES, ImageBindArch, ModelConfig
from pandagpt_demo.model.footprint import Precision

GB = 10**9
SEVEN_B = needs_of(LLAMA_SHAPES["7b"], ImageBindArch(), 16)


def by_label(label: str) -> precision.Needs:
    return next(need for need in SEVEN_B if need.precision.label == label)


def test_7b_needs_shrink_with_the_bits_and_match_the_measured_sizes() -> None:
    """The estimates against the resident memory measured with the model loaded (README, On a CPU):
    bfloat16 16.3 GB, int8 9.5, int4 7.0, each between the weights alone and the weights with the
    1.5 GB of runtime the estimate adds (the process held 0.9 GB before loading)."""
    labels = [need.precision.label for need in SEVEN_B]
    assert labels == ["float32", "bfloat16", "8bit", "4bit"]
    loads = [need.load for need in SEVEN_B]
    assert loads == sorted(loads, reverse=True)
    for label, measured in (("bfloat16", 16.3), ("8bit", 9.5), ("4bit", 7.0)):
        assert by_label(label).load / GB - 1.5 <= measured <= by_label(label).load / GB, label


@pytest.mark.parametrize(("available_gb", "chosen"), [(60, "float32"), (24.4, "bfloat16"), (20, "8bit"), (16.3, "4bit"), (9.0, "4bit")])
def test_the_largest_precision_that_fits_is_taken(available_gb: float, chosen: str) -> None:
    taken, reason = choose(SEVEN_B, int(available_gb * GB))
    assert taken.label == chosen
    assert f"{available_gb:.1f} GB available" in reason and "4bit needs 14.1 GB" in reason


def test_nothing_that_fits_is_refused_before_loading() -> None:
    with pytest.raises(DoesNotFit, match=r"has 5.0 GB of memory available; even 4bit needs about 7.6 GB to load"):
        choose(SEVEN_B, 5 * GB)


def test_an_asked_precision_that_cannot_load_names_the_ones_that_would() -> None:
    with pytest.raises(DoesNotFit) as refused:
        require(SEVEN_B, Precision("float32"), 16 * GB)
    message = str(refused.value)
    assert message.startswith("float32 needs about 31.8 GB of memory to load, and this machine has 16.0 GB available")
    assert "these would: --quantize 8bit, --quantize 4bit" in message
    require(SEVEN_B, Precision("bfloat16", "4bit"), 16 * GB)  # fits: no refusal


def test_the_flags_choose_or_override(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)

    def run(*flags: str) -> tuple[ModelConfig, str | None]:
        args = parser.parse_args(["--checkpoints", str(tmp_path), "--memory-gb", "16.3", *flags])
        args.concurrency = 16  # app.py's flag: the answers decoded at once, each with its KV cache
        return cpu_precision(args, model_config(args, "7b"))

    chosen, reason = run("--device", "cpu")
    assert (chosen.run.dtype, chosen.run.quantize) == ("bfloat16", "4bit") and reason.startswith("4bit: the largest that fits")
    asked, reason = run("--device", "cpu", "--quantize", "8bit")  # asked for, and it loads: as asked
    assert (asked.run.dtype, asked.run.quantize, reason) == ("auto", "8bit", None)
    with pytest.raises(DoesNotFit, match="--quantize 4bit"):
        run("--device", "cpu", "--dtype", "float32")
    on_gpu, reason = run("--device", "cuda")
    assert (on_gpu.run.dtype, on_gpu.run.quantize, reason) == ("auto", None, None)  # a GPU's memory is not the host's


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_available_memory_is_the_least_of_the_kernel_and_the_cgroup(tmp_path: Path, version: str) -> None:
    proc, cgroups = tmp_path / "proc", tmp_path / "cgroup"
    _write(proc / "meminfo", "MemTotal:       24683772 kB\nMemAvailable:   20000000 kB\n")
    if version == "v2":
        _write(proc / "self" / "cgroup", "0::/space\n")
        folder = cgroups / "space"
        _write(folder / "memory.max", str(16 * 2**30))
        _write(folder / "memory.current", str(6 * 2**30))
        _write(folder / "memory.stat", f"anon 100\ninactive_file {2 * 2**30}\n")
    else:
        _write(proc / "self" / "cgroup", "4:memory:/space\n1:cpu:/\n")
        folder = cgroups / "memory" / "space"
        _write(folder / "memory.limit_in_bytes", str(16 * 2**30))
        _write(folder / "memory.usage_in_bytes", str(6 * 2**30))
        _write(folder / "memory.stat", f"cache 100\ntotal_inactive_file {2 * 2**30}\n")
    assert available_memory(proc, cgroups) == 12 * 2**30  # 16 - (6 - 2 reclaimable), below MemAvailable's 20.5 GB
    _write(folder / ("memory.max" if version == "v2" else "memory.limit_in_bytes"), "max" if version == "v2" else str(2**63 - 4096))
    assert available_memory(proc, cgroups) == 20000000 * 1024  # no limit: the kernel's figure


def test_no_readable_memory_leaves_the_choice_to_the_flags(tmp_path: Path) -> None:
    assert available_memory(tmp_path / "none", tmp_path / "none") is None
