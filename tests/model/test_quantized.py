"""int8/int4 weights on the CPU: the kernels compute what the dequantized weights would, the LoRA is
merged before rounding, and the quantized cache is read only while fresh."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from pandagpt_demo.config import ModelConfig
from pandagpt_demo.model import quantized_cache
from pandagpt_demo.model.conversation import Conversation
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.model.quantized import Int4Linear, Int8Linear, quantize_int4
from pandagpt_demo.model.tensorfiles import FolderTensors
from pandagpt_demo.weights.synthetic import make_tiny


def _weight(out_features: int, in_features: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(out_features, in_features, generator=generator) * 0.02


def _input(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)


def test_int8_kernel_equals_the_dequantized_weight() -> None:
    weight = _weight(96, 64)
    layer = Int8Linear.from_weight(weight, None, torch.bfloat16)
    dequantized = layer.weight_int8.double() * layer.scales.double()[:, None]
    x = _input(2, 3, 64)  # (batch, sequence, features) as the decoder gives it
    expected = x.double() @ dequantized.t()
    got = layer(x)
    assert got.shape == (2, 3, 96) and got.dtype == torch.bfloat16
    assert torch.allclose(got.double(), expected, rtol=1e-2, atol=1e-3)
    assert ((dequantized - weight.double()).abs() <= layer.scales.double()[:, None] * 0.5 + 1e-9).all()  # half a step at most


def test_int4_kernel_equals_the_dequantized_weight() -> None:
    weight = _weight(96, 128)
    layer = Int4Linear.from_weight(weight, None, torch.bfloat16, group_size=32)
    codes, _, _ = quantize_int4(weight, 32, torch.bfloat16)
    # The kernel's convention, from the stored (rounded) scales and zeros: w = (q - 8) · s + z per group of 32 inputs.
    scales = layer.scales_and_zeros[..., 0].t().double().repeat_interleave(32, dim=1)
    zeros = layer.scales_and_zeros[..., 1].t().double().repeat_interleave(32, dim=1)
    dequantized = (codes.double() - 8) * scales + zeros
    x = _input(5, 128)
    expected = x.double() @ dequantized.t()
    assert torch.allclose(layer(x).double(), expected, rtol=1e-2, atol=1e-3)
    # One rounding to a step of (max - min) / 15 per group: at most half a step from the weight, but
    # where bfloat16's rounding of the scale moved a group's end just past code 0 or 15 (a hair more).
    assert ((dequantized - weight.double()).abs() <= scales * 0.5 + scales * 2**-7 * 8).all()


def test_int4_refuses_a_group_that_does_not_divide_the_inputs() -> None:
    with pytest.raises(ValueError, match="do not divide"):
        Int4Linear.from_weight(_weight(8, 48), None, torch.bfloat16, group_size=32)


@pytest.fixture(scope="module")
def tiny_copy(tmp_path_factory: pytest.TempPathFactory) -> ModelConfig:
    """A tiny set of this module's own: its cache folder is written, its files touched and changed."""
    return make_tiny(tmp_path_factory.mktemp("quantized") / "tiny")


def _first_logits(model: PandaGPT) -> torch.Tensor:
    conversation = Conversation(model.config.spec.prompt)
    conversation.ask("What is in this picture?")
    with torch.inference_mode():
        return model.llm(inputs_embeds=model.prompt_embeds(conversation, None)).logits[0, -1].float()


@pytest.mark.parametrize("setting", ["8bit", "4bit"])
def test_the_lora_is_merged_before_rounding(tiny_copy: ModelConfig, setting: str) -> None:
    """Each quantized projection is the rounding of the merged weight that the float path computes."""
    merged = PandaGPT.load(tiny_copy).llm  # float32, peft's merge
    quantized = PandaGPT.load(tiny_copy.updated(quantize=setting)).llm
    assert quantized.dtype == torch.bfloat16
    for name in ("q_proj", "v_proj", "o_proj"):
        reference = getattr(merged.model.layers[1].self_attn, name).weight
        layer = getattr(quantized.model.layers[1].self_attn, name)
        eye = torch.eye(reference.shape[1], dtype=torch.bfloat16)
        recovered = layer(eye).float().t()  # the layer applied to the basis: its dequantized weight
        step = reference.abs().amax(dim=1, keepdim=True) / 127 if setting == "8bit" else (reference.max() - reference.min()) / 15
        output_rounding = reference.abs() * 2**-8  # the layer's output is bfloat16
        assert ((recovered - reference).abs() <= step * 0.5 * 1.01 + output_rounding).all()
        with FolderTensors(tiny_copy.files.vicuna_dir) as vicuna:
            base = vicuna.get(f"model.layers.1.self_attn.{name}.weight").float()  # Vicuna's own, before the LoRA
        assert (recovered - base).norm() > (recovered - reference).norm()  # the LoRA's update is in it: the merged weight explains it better


def test_the_cache_is_written_once_and_read_while_fresh(tiny_copy: ModelConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tiny_copy.updated(quantize="4bit")
    folder = config.files.quantized_dir("4bit")
    shutil.rmtree(folder, ignore_errors=True)
    first = _first_logits(PandaGPT.load(config))
    shards = quantized_cache.QuantizedCache(folder).shards()
    assert shards, "the first load writes the cache"

    writes: list[Path] = []
    monkeypatch.setattr(quantized_cache.QuantizedCache, "write", lambda self, *args: writes.append(self.folder))
    assert torch.equal(_first_logits(PandaGPT.load(config)), first) and writes == []  # read, not made again

    delta = config.files.delta_path
    os.utime(delta, ns=(delta.stat().st_atime_ns, delta.stat().st_mtime_ns + 10**9))  # touched, same bytes: rehashed, still used
    assert torch.equal(_first_logits(PandaGPT.load(config)), first) and writes == []


def test_a_changed_source_or_setting_is_never_read_stale(tiny_copy: ModelConfig, caplog: pytest.LogCaptureFixture) -> None:
    config = tiny_copy.updated(quantize="8bit")
    shutil.rmtree(config.files.quantized_dir("8bit"), ignore_errors=True)
    before = _first_logits(PandaGPT.load(config))

    delta = config.files.delta_path
    saved = delta.read_bytes()
    state = torch.load(delta, weights_only=True)
    torch.save({key: value * 2 if ".lora_B" in key else value for key, value in state.items()}, delta)
    try:
        caplog.set_level("INFO", logger="pandagpt_demo.model.quantized_cache")
        changed = _first_logits(PandaGPT.load(config))
        assert "pytorch_model.pt changed since" in caplog.text
        assert not torch.equal(changed, before)
        fresh = PandaGPT.load(config.updated(quantize=None, dtype="bfloat16"))  # the same files unquantized
        assert torch.nn.functional.cosine_similarity(changed, _first_logits(fresh), dim=0) > 0.99
    finally:
        delta.write_bytes(saved)


def test_other_settings_or_a_half_written_cache_are_not_read(tiny_copy: ModelConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    from pandagpt_demo.model import quantized_load

    config = tiny_copy.updated(quantize="4bit")
    folder = config.files.quantized_dir("4bit")
    PandaGPT.load(config)  # a complete cache
    good = {path.name: path.read_bytes() for path in quantized_cache.QuantizedCache(folder).shards()}

    identity = quantized_load.cache_identity
    monkeypatch.setattr(quantized_load, "cache_identity", lambda *args: identity(*args) | {"torch": "0.0"})
    cache = quantized_cache.QuantizedCache(folder)
    assert cache.read(quantized_load.cache_identity(*_identity_args(config)), quantized_load.source_files(config), "cpu") is None

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", fail)
    PandaGPT.load(config)  # quantizes again (other torch), cannot write: serves anyway, the old cache untouched
    assert {path.name: path.read_bytes() for path in cache.shards()} == good
    assert not list(folder.parent.glob("*.partial-*"))


def _identity_args(config: ModelConfig) -> tuple:
    from pandagpt_demo.model.quantized import Scheme

    return Scheme.named(config.run.quantize), torch.bfloat16, config.spec.lora


def test_quantizing_shows_its_progress_without_passing_a_step(tiny_copy: ModelConfig) -> None:
    """The terminal bar and the page's status line hear the quantizing's percentage (app/runtime.py)."""
    from pandagpt_demo.app.runtime import ModelChoice, load_with_progress

    config = tiny_copy.updated(quantize="8bit")
    shutil.rmtree(config.files.quantized_dir("8bit"), ignore_errors=True)
    steps: list[str] = []
    details: list[str] = []
    load_with_progress(ModelChoice(config, None), steps.append, details.append)
    assert details[-2:] == ["quantizing Vicuna to 8 bits: 100%", f"writing the quantized weights to {config.files.quantized_dir('8bit')} (once)"]
    assert steps[-2:] == ["LoRA (merged before quantizing)", "ready"] and not set(details) & set(steps)
