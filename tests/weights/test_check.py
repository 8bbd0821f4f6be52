"""`check` on good, missing and damaged folders, and the app's fallback that uses it."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest
import torch

from pandagpt_demo.app.runtime import choose_model
from pandagpt_demo.config import ModelConfig
from pandagpt_demo.weights.check import check_model
from pandagpt_demo.weights.cli import main
from pandagpt_demo.weights.delta import apply_delta
from pandagpt_demo.weights.manifest import record_component
from tests.tiny_llama import write_llama_pair


@pytest.fixture
def tiny_copy(tiny_config: ModelConfig, tmp_path: Path) -> ModelConfig:
    """A private copy of the session's tiny set, as `check --dir tmp_path --model tiny` sees it."""
    shutil.copytree(tiny_config.files.imagebind_path.parent, tmp_path / "tiny")
    return ModelConfig.preset("tiny", tmp_path)


@pytest.fixture(scope="module")
def llama_pair(tmp_path_factory: pytest.TempPathFactory):
    return write_llama_pair(tmp_path_factory.mktemp("llama_pair"))


def run_check(directory: Path, model: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(["check", "--dir", str(directory), "--model", model])
    return status, capsys.readouterr().out


def test_a_good_tiny_folder_passes(tiny_copy: ModelConfig, tmp_path: Path, capsys) -> None:
    status, out = run_check(tmp_path, "tiny", capsys)
    assert status == 0, out
    assert "All present and plausible" in out
    assert out.count("\n  OK ") == 6  # imagebind, config, tokenizer, one shard, weights vs config, delta
    assert "LoRA r=32 on 2 layers" in out and "ImageBind tiny" in out


def test_missing_folders_name_each_file_and_the_command(tmp_path: Path, capsys) -> None:
    status, out = run_check(tmp_path, "tiny", capsys)
    assert status == 1
    assert "missing imagebind_huge.pth" in " ".join(out.split()) and "vicuna_tiny/" in out and "pandagpt_tiny/pytorch_model.pt" in out
    assert f"python -m pandagpt_demo.weights make-tiny {tmp_path / 'tiny'}" in out

    status, out = run_check(tmp_path, "7b", capsys)
    assert status == 1 and "vicuna_7b_v0/" in out
    assert out.count(f"python -m pandagpt_demo.weights download --model 7b --dir {tmp_path}") == 3
    # without --model: the real sizes present (none here, so 7b)
    assert main(["check", "--dir", str(tmp_path)]) == 1 and "7b checkpoints" in capsys.readouterr().out


def test_damaged_and_mismatched_files_are_wrong(tiny_copy: ModelConfig, tmp_path: Path, capsys) -> None:
    config = tiny_copy
    data = config.files.imagebind_path.read_bytes()
    config.files.imagebind_path.write_bytes(data[: len(data) // 2])  # an interrupted copy
    state = torch.load(config.files.delta_path, weights_only=True)
    torch.save({k: v for k, v in state.items() if ".layers.1." not in k}, config.files.delta_path)  # LoRA for 1 of 2 layers
    status, out = run_check(tmp_path, "tiny", capsys)
    assert status == 1
    lines = {line.split()[1]: line for line in out.splitlines() if line.startswith("  wrong")}
    assert "not a readable checkpoint" in lines["imagebind_huge.pth"]
    assert "LoRA for 1 layers, but Vicuna has 2" in lines["pandagpt_tiny/pytorch_model.pt"]

    state["llama_proj.weight"] = torch.zeros(48, 32)
    torch.save(state, config.files.delta_path)
    report = check_model(config)
    assert report.status("delta") == "wrong" and "llama_proj.weight is (48, 32)" in report.explanation()


def test_a_sharded_vicuna_with_a_missing_shard(tiny_copy: ModelConfig, llama_pair, tmp_path: Path, capsys) -> None:
    base, delta, _ = llama_pair
    shutil.rmtree(tiny_copy.files.vicuna_dir)
    apply_delta(base, delta, tiny_copy.files.vicuna_dir, max_shard_bytes=3_000_000)  # Vicuna as --from-delta makes it
    status, out = run_check(tmp_path, "tiny", capsys)
    assert status == 0, out
    assert "vicuna_tiny/model-00003-of-00003.safetensors" in out and "32001 tokens" in out

    (tiny_copy.files.vicuna_dir / "model-00002-of-00003.safetensors").unlink()
    status, out = run_check(tmp_path, "tiny", capsys)
    assert status == 1
    assert "missing vicuna_tiny/model-00002-of-00003.safetensors" in " ".join(out.split())
    assert "listed in model.safetensors.index.json" in out


def test_a_vicuna_delta_in_place_of_vicuna_is_caught(tiny_copy: ModelConfig, llama_pair, tmp_path: Path, capsys) -> None:
    """The original project's trap: LMSYS's delta loads like a model and answers nonsense."""
    shutil.rmtree(tiny_copy.files.vicuna_dir)
    shutil.copytree(llama_pair[1], tiny_copy.files.vicuna_dir)
    status, out = run_check(tmp_path, "tiny", capsys)
    assert status == 1
    assert "looks like a delta, not a merged Vicuna" in out


def test_sizes_are_compared_with_the_manifest(tiny_copy: ModelConfig, tmp_path: Path, capsys) -> None:
    root = tiny_copy.files.imagebind_path.parent
    size = tiny_copy.files.delta_path.stat().st_size
    record_component(
        root,
        "pandagpt_tiny",
        source="repo:x/y",
        flags=["--delta-repo", "x/y"],
        origins=[],
        files={"pandagpt_tiny/pytorch_model.pt": {"size": size + 1, "sha256": "0" * 64}},
    )
    status, out = run_check(tmp_path, "tiny", capsys)
    assert status == 1 and f"{size:,} bytes, the manifest says {size + 1:,}" in out
    record_component(
        root, "pandagpt_tiny", source="repo:x/y", flags=[], origins=[], files={"pandagpt_tiny/pytorch_model.pt": {"size": size, "sha256": "0" * 64}}
    )
    assert run_check(tmp_path, "tiny", capsys)[0] == 0  # sums only with --hash
    assert main(["check", "--dir", str(tmp_path), "--model", "tiny", "--hash"]) == 1
    assert "sha256 differs" in capsys.readouterr().out


def test_the_app_falls_back_to_tiny_with_checks_explanation(tiny_config: ModelConfig, tmp_path: Path) -> None:
    args = argparse.Namespace(model="7b", checkpoints=tmp_path, device="cpu", dtype="auto", quantize=None, compile=True)
    choice = choose_model(args)
    assert choice.config.name == "tiny"
    assert "imagebind_huge.pth missing" in choice.fallback_reason
    assert f"Fix: python -m pandagpt_demo.weights download --model 7b --dir {tmp_path}" in choice.fallback_reason
    assert choice.fallback_reason in choice.banner

    # A real-size slot holding the tiny files: present but wrong, so the fix says --replace.
    shutil.copyfile(tiny_config.files.imagebind_path, tmp_path / "imagebind_huge.pth")
    record_component(tmp_path, "pandagpt_7b", source="repo:x/y", flags=["--delta-repo", "x/y"], origins=[], files={})
    (tmp_path / "pandagpt_7b").mkdir()
    shutil.copyfile(tiny_config.files.delta_path, tmp_path / "pandagpt_7b" / "pytorch_model.pt")
    reason = choose_model(args).fallback_reason
    assert "imagebind_huge.pth wrong" in reason and "missing keys" in reason
    assert "pandagpt_7b/pytorch_model.pt wrong" in reason
    assert reason.endswith(f"download --model 7b --dir {tmp_path} --delta-repo x/y --replace")


def test_a_lora_tensor_under_both_names_is_wrong(tiny_copy: ModelConfig, tmp_path: Path, capsys) -> None:
    state = torch.load(tiny_copy.files.delta_path, weights_only=True)
    key = next(k for k in state if k.endswith(".lora_B.default.weight"))
    torch.save(state | {key.replace(".default", ""): state[key]}, tiny_copy.files.delta_path)
    status, out = run_check(tmp_path, "tiny", capsys)
    assert status == 1
    line = next(line for line in out.splitlines() if "pandagpt_tiny/pytorch_model.pt" in line and line.startswith("  wrong"))
    assert "the same LoRA tensor twice" in line and key.replace(".default", "") in line


def test_make_tiny_writes_a_fresh_vicuna_folder(tmp_path: Path, capsys) -> None:
    """A file left by an earlier set (here a [PAD] token) would be loaded with the new one; a folder
    the command did not write (someone's real Vicuna) is never emptied."""
    config = ModelConfig.preset("tiny", tmp_path)
    stale = config.files.vicuna_dir / "added_tokens.json"
    config.files.vicuna_dir.mkdir(parents=True)
    stale.write_text('{"[PAD]": 32000}')
    assert main(["make-tiny", str(config.files.imagebind_path.parent)]) == 1
    assert stale.exists() and "did not write" in capsys.readouterr().err

    stale.unlink()
    assert main(["make-tiny", str(config.files.imagebind_path.parent)]) == 0
    stale.write_text('{"[PAD]": 32000}')  # now in a folder make-tiny wrote: rewritten afresh
    assert main(["make-tiny", str(config.files.imagebind_path.parent)]) == 0
    assert not stale.exists()
    assert run_check(tmp_path, "tiny", capsys)[0] == 0
