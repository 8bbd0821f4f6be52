"""`make-random`'s writer: a set larger than one weight file is written shard by shard, as Hugging Face
shards a model, and loads and checks like any other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pandagpt_demo.config import LLAMA_SHAPES, ModelConfig
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.weights import synthetic
from pandagpt_demo.weights.check import check_model


def test_a_set_larger_than_a_shard_is_written_shard_by_shard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synthetic, "SHARD_BYTES", 1_500_000)  # the tiny LLM is 4.3 MB in float16
    config = synthetic.write_model_set(ModelConfig.tiny(tmp_path / "tiny"), LLAMA_SHAPES["tiny"], torch.float16, seed=3)
    folder = config.files.vicuna_dir
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shards = sorted(path.name for path in folder.glob("model-*.safetensors"))
    assert len(shards) >= 3 and sorted(set(index["weight_map"].values())) == shards
    assert not (folder / "model.safetensors").exists()
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    assert check_model(config, "tiny").ok

    model = PandaGPT.load(config)
    weights = {key: value for key, value in model.llm.state_dict().items() if key.endswith("weight")}
    norms = [value for key, value in weights.items() if key.endswith("norm.weight")]
    assert norms and all(torch.equal(value, torch.ones_like(value)) for value in norms)  # transformers' init: norms one
    embedding = weights["model.embed_tokens.weight"]
    assert torch.equal(embedding[0], torch.zeros_like(embedding[0]))  # the pad row zero
    assert 0.015 < float(weights["model.layers.0.mlp.up_proj.weight"].float().std()) < 0.025  # the rest normal(0, 0.02)
