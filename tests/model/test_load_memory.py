"""Loading holds each weight once: the peak host memory a load adds stays near the model's own size."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

from pandagpt_demo.config import ModelConfig
from pandagpt_demo.weights.synthetic import write_model_set
from tests.conftest import REPO_ROOT
from tests.model.measure_load import MID_LLAMA, mid_config

# What a load may add to the process's peak: each weight once (the model's own size), plus the one
# weight being cast at that moment (the largest: Vicuna's embedding, 16% of this mid-size set and
# 1.6% of 7B), plus 5% of the model for the allocator and the modules' own objects. Main's loader,
# which built ImageBind in float32 and kept Vicuna's file mapped beside the model, measured 2.1x the
# model's size here; a second transient copy of Vicuna alone would pass this bound by far.
ALLOCATOR_SLACK = 0.05


@pytest.fixture(scope="module")
def mid_set(tmp_path_factory: pytest.TempPathFactory) -> ModelConfig:
    """A mid-size set in the released formats: Vicuna float16 safetensors, ImageBind a float32 torch file."""
    return write_model_set(mid_config(tmp_path_factory.mktemp("mid")), MID_LLAMA, torch.float16)


@pytest.fixture(scope="module")
def mid_bin_set(mid_set: ModelConfig, tmp_path_factory: pytest.TempPathFactory) -> ModelConfig:
    """The same set with Vicuna as a torch `pytorch_model.bin`, as the released Vicuna folders hold it."""
    from safetensors.torch import load_file

    config = mid_config(tmp_path_factory.mktemp("mid_bin"))
    config.files.imagebind_path.symlink_to(mid_set.files.imagebind_path)
    config.files.delta_path.parent.symlink_to(mid_set.files.delta_path.parent)
    config.files.vicuna_dir.mkdir()
    for file in mid_set.files.vicuna_dir.iterdir():
        if file.suffix == ".safetensors":
            torch.save(load_file(file), config.files.vicuna_dir / "pytorch_model.bin")
        else:
            shutil.copy(file, config.files.vicuna_dir / file.name)
    return config


@pytest.mark.parametrize("vicuna", ["mid_set", "mid_bin_set"])
def test_loading_holds_each_weight_once(vicuna: str, tiny_config: ModelConfig, request: pytest.FixtureRequest) -> None:
    """Loaded in bfloat16, every tensor is cast on the way in: building ImageBind in float32 and loading
    its file whole, or keeping Vicuna's file (safetensors or torch's) mapped beside the model, would
    each go past the bound."""
    model_set: ModelConfig = request.getfixturevalue(vicuna)
    command = [sys.executable, "-m", "tests.model.measure_load", str(tiny_config.files.root), str(model_set.files.root), "bfloat16"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    numbers = json.loads(result.stdout.splitlines()[-1])
    added = numbers["peak_rss"] - numbers["rss_before"]
    assert numbers["model_bytes"] > 300e6, "the set is big enough for twice its weights to stand out"
    model, largest = numbers["model_bytes"], numbers["largest_bytes"]
    bound = model * (1 + ALLOCATOR_SLACK) + largest
    shown = (
        f"the load added {added / 1e6:.0f} MB for a {model / 1e6:.0f} MB model ({added / model:.3f}x) whose largest weight is {largest / 1e6:.0f} MB"
    )
    print(f"{vicuna}: {shown}; bound {bound / 1e6:.0f} MB")
    assert added <= bound, shown


def test_streamed_weights_equal_the_files_cast_whole(mid_set: ModelConfig) -> None:
    """Cast tensor by tensor on the way in, the weights are bit for bit the files' cast whole, and the
    merged projections are Vicuna's plus peft's B @ A (float32, rounded once to the dtype)."""
    from safetensors.torch import load_file

    from pandagpt_demo.model.pandagpt import PandaGPT

    dtype = torch.bfloat16
    model = PandaGPT.load(mid_set.updated(dtype="bfloat16"))
    imagebind = torch.load(mid_set.files.imagebind_path, weights_only=True)
    model.encoder.ensure_loaded("text")  # read on first use on the CPU
    loaded = model.encoder.model.state_dict()
    assert loaded.keys() == imagebind.keys()
    for key, value in imagebind.items():
        assert torch.equal(loaded[key], value.to(dtype)), key
    vicuna = load_file(mid_set.files.vicuna_dir / "model.safetensors")
    delta = torch.load(mid_set.files.delta_path, weights_only=True)
    loaded = model.llm.state_dict()
    assert loaded.keys() == vicuna.keys()
    merged = 0
    for key, value in vicuna.items():
        expected = value.to(dtype)
        lora_a = f"llama_model.base_model.model.{key.removesuffix('.weight')}.lora_A.default.weight"
        if lora_a in delta:  # peft adds B @ A (alpha / r = 1) in place: summed in float32, rounded once
            expected = (expected.float() + delta[lora_a.replace("lora_A", "lora_B")].float() @ delta[lora_a].float()).to(dtype)
            merged += 1
        assert torch.equal(loaded[key], expected), key
    assert merged == 4 * MID_LLAMA.num_hidden_layers
    assert model.llm.model.rotary_emb.inv_freq.dtype == dtype  # as the whole model's .to(dtype) left it
    assert torch.equal(model.llama_proj.weight, delta["llama_proj.weight"].to(dtype))
