"""Vicuna v0 = LLaMA + LMSYS delta (`delta.py`) on tiny checkpoints in the real repos' formats."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pandagpt_demo.config import LlamaShape
from pandagpt_demo.weights.cli import main
from pandagpt_demo.weights.delta import DeltaMismatch, apply_delta
from tests.tiny_llama import write_llama_pair


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, torch.Tensor]]:
    return write_llama_pair(tmp_path_factory.mktemp("pair"))


def _read_folder(folder: Path) -> dict[str, torch.Tensor]:
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    tensors: dict[str, torch.Tensor] = {}
    for name in sorted(set(index["weight_map"].values())):
        tensors |= load_file(folder / name)
    assert set(index["weight_map"]) == set(tensors)
    return tensors


def test_target_is_base_plus_delta_exactly_including_the_pad_row(pair, tmp_path: Path) -> None:
    base_dir, delta_dir, vicuna = pair
    out = tmp_path / "vicuna"
    apply_delta(base_dir, delta_dir, out, max_shard_bytes=3_000_000)

    result = _read_folder(out)
    base = {k: v for name in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors") for k, v in load_file(base_dir / name).items()}
    delta = {}
    for name in ("pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"):
        delta |= torch.load(delta_dir / name, weights_only=True)
    assert "model.layers.0.self_attn.rotary_emb.inv_freq" in delta
    assert set(result) == set(base) == set(vicuna)  # inv_freq dropped
    for key, value in result.items():
        assert value.dtype == torch.float16
        grown = torch.zeros(delta[key].shape, dtype=torch.float16)
        grown[: base[key].shape[0]] = base[key].half()
        assert torch.equal(value, grown + delta[key].half()), key
        assert torch.equal(value, vicuna[key]), key
    for key in ("model.embed_tokens.weight", "lm_head.weight"):
        assert result[key].shape == (32001, 64)
        assert torch.equal(result[key][32000], delta[key][32000].half())  # the [PAD] row: zeros + delta
        assert torch.equal(result[key][:32000], base[key] + delta[key][:32000])

    weight_map = json.loads((out / "model.safetensors.index.json").read_text())["weight_map"]
    shards = {name: [k for k, v in weight_map.items() if v == name] for name in set(weight_map.values())}
    assert len(shards) > 1  # bounded shards: a shard over the limit holds a single (embedding-sized) tensor
    assert all(len(keys) == 1 or (out / name).stat().st_size <= 3_000_000 + 10_000 for name, keys in shards.items())
    config = json.loads((out / "config.json").read_text())
    assert config["vocab_size"] == 32001

    from transformers import AutoModelForCausalLM, AutoTokenizer

    llm = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float16)
    assert torch.equal(llm.lm_head.weight, vicuna["lm_head.weight"])
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert len(tokenizer) == 32001 and tokenizer.pad_token == "[PAD]"


def test_a_delta_of_another_size_is_refused_naming_both_shapes(pair, tmp_path: Path) -> None:
    base_dir, _, _ = pair
    other_base, other_delta, _ = write_llama_pair(
        tmp_path / "other", LlamaShape(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    )
    out = tmp_path / "out"
    with pytest.raises(DeltaMismatch, match=r"hidden_size is 32 in the delta and 64 in the base"):
        apply_delta(base_dir, other_delta, out)
    # Same config, other tensors (a mislabelled file): the tensor shapes are compared too.
    shutil.copyfile(base_dir / "config.json", other_delta / "config.json")
    with pytest.raises(DeltaMismatch) as caught:
        apply_delta(base_dir, other_delta, out)
    assert "q_proj.weight is (32, 32) in the delta but (64, 64) in the base" in str(caught.value)
    assert not out.exists()


def test_a_delta_with_fewer_rows_or_missing_tensors_is_refused(pair, tmp_path: Path) -> None:
    base_dir, delta_dir, _ = pair
    broken = tmp_path / "delta"
    shutil.copytree(delta_dir, broken)
    shard = broken / "pytorch_model-00001-of-00002.bin"
    state = torch.load(shard, weights_only=True)
    state["model.embed_tokens.weight"] = state["model.embed_tokens.weight"][:31000]
    torch.save(state, shard)
    with pytest.raises(DeltaMismatch, match=r"model.embed_tokens.weight is \(31000, 64\) in the delta but \(32000, 64\) in the base"):
        apply_delta(base_dir, broken, tmp_path / "out")

    shutil.rmtree(broken)
    shutil.copytree(delta_dir, broken)
    state = torch.load(shard, weights_only=True)
    del state[next(key for key in state if "norm" in key)]
    torch.save(state, shard)
    with pytest.raises(DeltaMismatch, match="tensors only in the base"):
        apply_delta(base_dir, broken, tmp_path / "out")


def test_apply_delta_command(pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base_dir, delta_dir, vicuna = pair
    assert main(["apply-delta", str(base_dir), str(delta_dir), str(tmp_path / "vicuna")]) == 0
    assert torch.equal(_read_folder(tmp_path / "vicuna")["model.norm.weight"], vicuna["model.norm.weight"])
    other = tmp_path / "other"
    _, wrong_delta, _ = write_llama_pair(other, LlamaShape(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4))
    assert main(["apply-delta", str(base_dir), str(wrong_delta), str(tmp_path / "refused")]) == 1
    assert "does not belong to the base" in capsys.readouterr().err


@pytest.fixture(scope="module")
def merged(pair, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Vicuna v0 as apply-delta makes it: what a user may mistake for the delta, or for the base."""
    base_dir, delta_dir, _ = pair
    out = tmp_path_factory.mktemp("merged") / "vicuna"
    apply_delta(base_dir, delta_dir, out)
    return out


def test_each_folder_must_play_its_role(pair, merged: Path, tmp_path: Path) -> None:
    """Shapes alone accept a merged Vicuna as the delta (it has [PAD] too): its norms say it is a model."""
    base_dir, delta_dir, _ = pair
    with pytest.raises(
        DeltaMismatch, match=rf"the delta '{merged}' looks like a full model, not LMSYS's Vicuna delta .*a merged Vicuna v0, it needs no delta"
    ):
        apply_delta(base_dir, merged, tmp_path / "a")
    with pytest.raises(DeltaMismatch, match=rf"the delta '{base_dir}' looks like a full model"):
        apply_delta(base_dir, base_dir, tmp_path / "b")
    with pytest.raises(DeltaMismatch, match=rf"the base '{delta_dir}' looks like a delta, not LLaMA .*swapped"):
        apply_delta(delta_dir, delta_dir, tmp_path / "c")
    # A merged Vicuna as the base: a model, but it already has the [PAD] row the v0 delta adds.
    with pytest.raises(DeltaMismatch, match=r"model.embed_tokens.weight has 32001 rows in both, .*the base is not LLaMA \(a merged Vicuna\?\)"):
        apply_delta(merged, delta_dir, tmp_path / "d")
    assert not any((tmp_path / name).exists() for name in "abcd")


@pytest.mark.parametrize("role", ["base", "delta"])
def test_unreadable_files_give_a_one_line_error_naming_the_file(pair, tmp_path: Path, role: str, capsys: pytest.CaptureFixture[str]) -> None:
    base_dir, delta_dir, _ = pair
    folders = {"base": shutil.copytree(base_dir, tmp_path / "llama"), "delta": shutil.copytree(delta_dir, tmp_path / "vicuna_delta")}
    shard = folders[role] / {"base": "model-00001-of-00002.safetensors", "delta": "pytorch_model-00002-of-00002.bin"}[role]
    whole = shard.read_bytes()
    shard.write_bytes(whole[:1000])  # an interrupted download
    assert main(["apply-delta", str(folders["base"]), str(folders["delta"]), str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("error: ")
    assert f"'{shard}'" in error and "truncated or damaged" in error

    shard.write_bytes(whole)
    (folders[role] / "config.json").write_text("{not json")
    assert main(["apply-delta", str(folders["base"]), str(folders["delta"]), str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"'{folders[role] / 'config.json'}' is missing or not valid JSON" in error
