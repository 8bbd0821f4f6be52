"""`download` with the real huggingface_hub client against a fake Hub on 127.0.0.1 (`fake_hub.py`).

Never the real Hub: HF_ENDPOINT (and huggingface_hub's own copy of it) points at the test server,
and so does the ImageBind URL.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from pandagpt_demo.config import WEIGHT_SOURCES, ModelConfig
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.weights import download as download_module
from pandagpt_demo.weights import fetch
from pandagpt_demo.weights.cli import main
from pandagpt_demo.weights.download import Request
from pandagpt_demo.weights.progress import DownloadMeter, Progress
from pandagpt_demo.weights.synthetic import RANDOM_SET_MARKER
from tests.conftest import REPO_ROOT
from tests.fake_hub import FakeHub
from tests.tiny7b_app import patch_7b
from tests.tiny_llama import write_bin_copy, write_llama_pair

VICUNA, PANDA, LLAMA, VICUNA_DELTA, GATED = (
    "test/vicuna-tiny-v0",
    "test/pandagpt-tiny",
    "test/llama-tiny",
    "test/vicuna-tiny-delta-v0",
    "test/gated-vicuna",
)


@pytest.fixture(scope="module")
def llama_pair(tmp_path_factory: pytest.TempPathFactory):
    return write_llama_pair(tmp_path_factory.mktemp("llama_pair"))


@pytest.fixture
def hub(tiny_config: ModelConfig, llama_pair, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    """The fake Hub serving the tiny set, a LLaMA + delta pair and a gated copy; the client pointed at it."""
    import huggingface_hub.constants as constants

    fake = FakeHub()
    fake.add_folder(VICUNA, tiny_config.files.vicuna_dir, extra={"README.md": b"# tiny\n", ".gitattributes": b"*.bin filter=lfs\n"})
    fake.add_folder(GATED, tiny_config.files.vicuna_dir, gated=True)
    fake.add_folder(PANDA, tiny_config.files.delta_path.parent)
    fake.add_folder(LLAMA, llama_pair[0])
    fake.add_folder(VICUNA_DELTA, llama_pair[1])
    with fake:
        fake.imagebind_url = fake.add_url("imagebind_huge.pth", tiny_config.files.imagebind_path.read_bytes())
        point_huggingface_hub_at(fake.endpoint, monkeypatch)
        monkeypatch.setattr(socket, "getaddrinfo", _loopback_only(socket.getaddrinfo))
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))  # not the developer's login
        monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))
        for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "PANDAGPT_IMAGEBIND_URL"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setattr(fetch, "RETRY_DELAY_S", 0.0)
        yield fake


@pytest.fixture
def seven_b(monkeypatch: pytest.MonkeyPatch) -> None:
    """The 7b size's names, layout and sources at the tiny model's shapes (the real files are 19 GB)."""
    patch_7b(monkeypatch.setitem, monkeypatch.setattr)


def candidate_repos(size: str = "7b") -> list[str]:
    """The Vicuna candidates' repo ids for `size`, in order (the from-delta pair last)."""
    return [repo for candidate in WEIGHT_SOURCES[size].vicuna for repo in candidate.ids]


def point_huggingface_hub_at(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_ENDPOINT, and what huggingface_hub derived from it at import (as if it had been set before)."""
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")


def _loopback_only(getaddrinfo):
    """A guard: any attempt to resolve a host other than 127.0.0.1 fails the test's request at once."""

    def guarded(host, *args, **kwargs):
        if host not in ("127.0.0.1", b"127.0.0.1"):
            raise OSError(f"test guard: no network beyond 127.0.0.1 (asked for {host!r})")
        return getaddrinfo(host, *args, **kwargs)

    return guarded


def tiny_args(hub: FakeHub, directory: Path, *extra: str, vicuna: tuple[str, ...] = ("--vicuna-repo", VICUNA)) -> list[str]:
    return ["download", "--model", "tiny", "--dir", str(directory), "--delta-repo", PANDA, *vicuna, "--imagebind-url", hub.imagebind_url, *extra]


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_the_meter_counts_every_byte_fetched_part_by_part(hub: FakeHub, tmp_path: Path) -> None:
    """What the app's status line shows: the bytes of the fetches' own progress bars, against the plan's total."""
    meter = DownloadMeter()
    seen: list[tuple[str, int]] = []
    original = meter.part
    meter.part = lambda name, index: (seen.append((name, index)), original(name, index))
    request = Request(model="tiny", directory=tmp_path, delta_repo=PANDA, vicuna_repo=VICUNA, imagebind_url=hub.imagebind_url)
    assert download_module.download(request, say=lambda line: None, meter=meter).ok
    progress = meter.snapshot()
    assert [name for name, _ in seen] == ["imagebind_huge.pth", "vicuna_tiny", "pandagpt_tiny"] and [i for _, i in seen] == [1, 2, 3]
    assert progress.done == progress.total == sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file() and f.name != "manifest.json")
    assert progress.parts == 3 and progress.seconds_left == 0
    assert progress.describe().startswith("pandagpt_tiny (part 3 of 3): ")


def test_progress_lines_say_part_amounts_rate_and_time_left() -> None:
    line = Progress("vicuna_7b_v0", 2, 3, done=3_200_000_000, total=19_100_000_000, rate=45e6).describe()
    assert line == "vicuna_7b_v0 (part 2 of 3): 3.20 GB of 19.10 GB, 45.00 MB/s, about 6 min left"
    assert Progress("imagebind_huge.pth", 1, 3, 0, 4_500_000_000, 0.0).describe().endswith("0 B of 4.50 GB, waiting for data")


def test_full_download_of_a_tiny_set_then_check_passes_and_the_model_loads(hub: FakeHub, tiny_config: ModelConfig, tmp_path: Path, capsys) -> None:
    assert main(tiny_args(hub, tmp_path)) == 0
    config = ModelConfig.preset("tiny", tmp_path)
    out = capsys.readouterr().out
    assert "To download:" in out and "All present and plausible" in out

    assert sha256(config.files.imagebind_path) == sha256(tiny_config.files.imagebind_path)
    assert sha256(config.files.delta_path) == sha256(tiny_config.files.delta_path)
    written = sorted(p.name for p in tiny_config.files.vicuna_dir.iterdir() if p.name != RANDOM_SET_MARKER)
    assert sorted(p.name for p in config.files.vicuna_dir.iterdir()) == written  # no README, no .cache
    assert not (config.files.imagebind_path.parent / ".download").exists()

    manifest = json.loads((config.files.imagebind_path.parent / "manifest.json").read_text())["components"]
    assert set(manifest) == {"imagebind_huge.pth", "vicuna_tiny", "pandagpt_tiny"}
    assert manifest["vicuna_tiny"]["origins"] == [{"repo": VICUNA, "revision": "main", "commit": hub.repos[VICUNA].commit}]
    weights = manifest["vicuna_tiny"]["files"]["vicuna_tiny/model.safetensors"]
    assert weights == {
        "size": config.files.vicuna_dir.joinpath("model.safetensors").stat().st_size,
        "sha256": sha256(tiny_config.files.vicuna_dir / "model.safetensors"),
    }
    assert manifest["imagebind_huge.pth"]["origins"] == [{"url": hub.imagebind_url}]
    assert manifest["pandagpt_tiny"]["flags"] == ["--delta-repo", PANDA]

    assert main(["check", "--dir", str(tmp_path), "--model", "tiny", "--hash"]) == 0
    model = PandaGPT.load(config)
    assert model.llm.config.hidden_size == 64

    # LFS files came from the "CDN"; a second run finds everything in place and fetches nothing.
    assert hub.requests("GET", "/cdn/")
    fetched = len(hub.requests("GET"))
    assert main(tiny_args(hub, tmp_path)) == 0
    assert "Nothing to download" in capsys.readouterr().out
    assert [r.path for r in hub.requests("GET")[fetched:] if "/resolve/" in r.path or "/cdn/" in r.path or "/files/" in r.path] == []


def test_from_delta_builds_vicuna_from_llama_and_the_delta(hub: FakeHub, llama_pair, tmp_path: Path) -> None:
    _, _, vicuna = llama_pair
    args = tiny_args(hub, tmp_path, vicuna=("--from-delta", "--base-repo", LLAMA, "--vicuna-delta-repo", VICUNA_DELTA))
    assert main(args) == 0
    config = ModelConfig.preset("tiny", tmp_path)
    from pandagpt_demo.model.tensorfiles import FolderTensors

    made = FolderTensors(config.files.vicuna_dir)
    assert set(made.keys()) == set(vicuna)
    assert all(torch.equal(made.get(key), vicuna[key]) for key in vicuna)
    assert made.shape("lm_head.weight") == (32001, 64)
    # One weight format only: the base repo's .bin copy is not fetched; sources are removed after use.
    assert not [r for r in hub.requests("HEAD", f"/{LLAMA}/resolve/") if r.path.endswith(".bin")]
    assert sorted(p.name for p in (config.files.imagebind_path.parent).iterdir()) == [
        "imagebind_huge.pth",
        "manifest.json",
        "pandagpt_tiny",
        "vicuna_tiny",
    ]
    entry = json.loads((config.files.imagebind_path.parent / "manifest.json").read_text())["components"]["vicuna_tiny"]
    assert [o["repo"] for o in entry["origins"]] == [LLAMA, VICUNA_DELTA] and entry["flags"][0] == "--from-delta"
    assert "vicuna_tiny/model.safetensors.index.json" in entry["files"]
    assert PandaGPT.load(config).llm.config.vocab_size == 32001


def test_from_delta_refuses_a_merged_vicuna_as_the_delta(hub: FakeHub, tmp_path: Path, capsys) -> None:
    """The tiny Vicuna has the base's very shapes: only its norms show it is a model, not a delta."""
    args = tiny_args(hub, tmp_path, vicuna=("--from-delta", "--base-repo", LLAMA, "--vicuna-delta-repo", VICUNA))
    assert main(args) == 1
    error = capsys.readouterr().err
    assert f"Cannot make Vicuna from {LLAMA} + {VICUNA}" in error and "looks like a full model, not LMSYS's Vicuna delta" in error
    assert not ModelConfig.preset("tiny", tmp_path).files.vicuna_dir.exists()


def test_a_dropped_hub_connection_is_resumed_with_a_range_request(hub: FakeHub, tiny_config: ModelConfig, tmp_path: Path) -> None:
    blob = "/cdn/" + sha256(tiny_config.files.vicuna_dir / "model.safetensors")
    hub.cut_once[blob] = 12_000_000  # huggingface_hub writes in 10 MiB chunks: one is on disk when the line drops
    assert main(tiny_args(hub, tmp_path)) == 0
    gets = hub.requests("GET", blob)
    assert [r.range for r in gets] == [None, f"bytes={10 * 1024**2}-"]
    config = ModelConfig.preset("tiny", tmp_path)
    assert sha256(config.files.vicuna_dir / "model.safetensors") == sha256(tiny_config.files.vicuna_dir / "model.safetensors")


def test_an_interrupted_url_download_continues_in_the_next_run(hub: FakeHub, tiny_config: ModelConfig, tmp_path: Path, capsys) -> None:
    path = "/files/imagebind_huge.pth"
    hub.cut_once[path] = 3_000_000
    hub.fail[f"GET {path}"] = [0] + [503] * 10  # the cut request is served, then the server is down
    assert main(tiny_args(hub, tmp_path)) == 1
    error = capsys.readouterr().err
    assert "HTTP 503" in error and hub.imagebind_url in error and "3,000,000 bytes received are kept" in error
    config = ModelConfig.preset("tiny", tmp_path)
    assert not config.files.imagebind_path.exists()  # nothing half-written in place
    [partial] = (config.files.imagebind_path.parent / ".download").glob("*/imagebind_huge.pth.part")
    assert partial.stat().st_size == 3_000_000
    assert main(["check", "--dir", str(tmp_path), "--model", "tiny"]) == 1

    hub.fail.clear()
    assert main(tiny_args(hub, tmp_path)) == 0
    assert hub.requests("GET", path)[-1].range == "bytes=3000000-"
    assert sha256(config.files.imagebind_path) == sha256(tiny_config.files.imagebind_path)


def test_404_names_the_file_the_url_and_the_flag(hub: FakeHub, tmp_path: Path, capsys) -> None:
    hub.add_repo("test/empty", {"README.md": b"nothing here\n"})
    args = tiny_args(hub, tmp_path)
    args[args.index(PANDA)] = "test/empty"
    assert main(args) == 1
    error = capsys.readouterr().err
    assert f"{hub.endpoint}/test/empty/resolve/main/pytorch_model.pt" in error
    assert "'pytorch_model.pt' is not in the Hub repository test/empty" in error and "--delta-repo" in error
    assert not hub.requests("GET", "/resolve/") and not hub.requests("GET", "/files/")  # nothing downloaded
    assert not (tmp_path / "tiny" / "pandagpt_tiny").exists()

    hub.fail["GET /files/imagebind_huge.pth"] = [0]
    hub.plain_files.pop("imagebind_huge.pth")
    assert main(tiny_args(hub, tmp_path)) == 1
    error = capsys.readouterr().err
    assert "HTTP 404" in error and hub.imagebind_url in error and "--imagebind-repo" in error


def test_401_for_a_gated_repo_says_how_to_set_hf_token(hub: FakeHub, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Hub lists a gated repo's files to anyone: access is asked (auth-check) before any byte of any part moves."""
    assert main(tiny_args(hub, tmp_path, vicuna=("--vicuna-repo", GATED))) == 1
    error = capsys.readouterr().err
    assert "is gated" in error and f"{hub.endpoint}/{GATED}" in error and "export HF_TOKEN=hf_" in error
    assert f"{hub.endpoint}/api/models/{GATED}/auth-check" in error  # the URL that answered 401
    assert hub.requests("GET", f"/api/models/{GATED}/revision/main")  # listed without a token, as the real Hub allows
    assert not hub.requests("GET", "/files/") and not hub.requests("GET", "/cdn/") and not hub.requests(path_contains="/resolve/")
    assert not (tmp_path / "tiny").exists()

    monkeypatch.setenv("HF_TOKEN", hub.other_tokens[0])  # a real account that never accepted the terms: 403
    assert main(tiny_args(hub, tmp_path, vicuna=("--vicuna-repo", GATED))) == 1
    error = capsys.readouterr().err
    assert "HTTP 403" in error and "A token was sent" in error and "has no access" in error

    monkeypatch.setenv("HF_TOKEN", "hf_wrong")  # a token the Hub does not know
    assert main(tiny_args(hub, tmp_path, vicuna=("--vicuna-repo", GATED))) == 1
    error = capsys.readouterr().err
    assert "refused the token" in error and "expired or revoked" in error and "is gated" not in error

    monkeypatch.setenv("HF_TOKEN", hub.token)
    start = len(hub.log)
    assert main(tiny_args(hub, tmp_path, vicuna=("--vicuna-repo", GATED))) == 0
    gated = [r for r in hub.log[start:] if f"/{GATED}/" in r.path]
    assert gated and all(r.authorization == f"Bearer {hub.token}" for r in gated)
    assert all(r.authorization is None for r in hub.log if r.server == "cdn")  # the token never leaves the Hub


def test_a_disabled_repo_is_not_blamed_on_a_missing_token(hub: FakeHub, tiny_config: ModelConfig, tmp_path: Path, capsys) -> None:
    hub.add_folder("test/disabled-vicuna", tiny_config.files.vicuna_dir, disabled=True)
    assert main(tiny_args(hub, tmp_path, vicuna=("--vicuna-repo", "test/disabled-vicuna"))) == 1
    error = capsys.readouterr().err
    assert "disabled the repository test/disabled-vicuna" in error and "HTTP 403" in error and "No token or login" in error
    assert "HF_TOKEN" not in error and "--vicuna-repo" in error
    assert not hub.requests("GET", "/files/")


def test_a_rate_limited_hub_says_wait_and_stops(hub: FakeHub, tmp_path: Path, capsys) -> None:
    hub.fail[f"GET /api/models/{VICUNA}/revision/main"] = [429]
    assert main(tiny_args(hub, tmp_path)) == 1
    error = capsys.readouterr().err
    assert "rate-limiting" in error and "retry after 30 s" in error and "hf auth login" in error
    assert not hub.requests("GET", "/files/")


def test_a_xet_transfer_failure_names_the_way_around_and_keeps_the_parts_in_place(
    hub: FakeHub, tiny_config: ModelConfig, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real hf_xet client fails against the fake Xet CAS; HF_HUB_DISABLE_XET=1 fetches the same file over HTTP."""
    import huggingface_hub.constants as constants

    hub.repos[PANDA].xet.add("pytorch_model.pt")
    assert main(tiny_args(hub, tmp_path)) == 1
    error = capsys.readouterr().err
    assert f"PandaGPT's tiny delta (pytorch_model.pt) from {hub.endpoint}/{PANDA}/resolve/main/pytorch_model.pt" in error
    assert "stored with Xet" in error and "HF_HUB_DISABLE_XET=1 python -m pandagpt_demo.weights download" in error
    assert "Already in place and kept: imagebind_huge.pth, vicuna_tiny." in error
    assert hub.requests("GET", "/xet-cas/")  # hf_xet really went to the CAS
    config = ModelConfig.preset("tiny", tmp_path)
    assert config.files.vicuna_dir.is_dir() and config.files.imagebind_path.is_file() and not config.files.delta_path.exists()

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # as `HF_HUB_DISABLE_XET=1` at start-up sets it
    fetched = len(hub.requests("GET", "/cdn/"))
    assert main(tiny_args(hub, tmp_path)) == 0
    assert [r.path for r in hub.requests("GET", "/cdn/")[fetched:]] == ["/cdn/" + sha256(tiny_config.files.delta_path)]  # only the delta
    assert sha256(config.files.delta_path) == sha256(tiny_config.files.delta_path)


def test_an_unknown_repo_and_no_network(hub: FakeHub, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(tiny_args(hub, tmp_path, vicuna=("--vicuna-repo", "test/no-such-repo"))) == 1
    error = capsys.readouterr().err
    assert "HTTP 401" in error and "does not exist, or it is private" in error and "--vicuna-repo" in error

    closed = "http://127.0.0.1:9"  # the discard port: nothing listens there
    point_huggingface_hub_at(closed, monkeypatch)
    args = tiny_args(hub, tmp_path)
    args[args.index(hub.imagebind_url)] = f"{closed}/imagebind_huge.pth"
    assert main(args) == 1
    error = capsys.readouterr().err
    assert "could not be reached" in error and "127.0.0.1:9" in error and "run the same command again" in error
    assert not (tmp_path / "tiny" / "imagebind_huge.pth").exists()


def test_too_little_disk_is_said_before_downloading(hub: FakeHub, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download_module.shutil, "disk_usage", lambda path: SimpleNamespace(total=10**9, used=10**9, free=1_000_000))
    assert main(tiny_args(hub, tmp_path)) == 1
    error = capsys.readouterr().err
    assert "Not enough disk space" in error and "1.00 MB free" in error and "vicuna_tiny" in error and "Nothing was downloaded" in error
    assert "on another disk with --dir (and start the app with --checkpoints pointing there)" in error
    assert not hub.requests("GET", "/resolve/") and not hub.requests("GET", "/cdn/") and not hub.requests("GET", "/files/")
    # app.py --download has no --dir: its folder is --checkpoints (a Request with the defaults, as app.py makes it).
    request = download_module.Request(model="tiny", directory=tmp_path, delta_repo=PANDA, vicuna_repo=VICUNA, imagebind_url=hub.imagebind_url)
    with pytest.raises(fetch.DownloadError) as caught:
        download_module.download(request, say=lambda line: None)
    assert "on another disk with --checkpoints." in str(caught.value) and "--dir" not in str(caught.value)


def test_a_wrong_part_is_replaced_only_with_replace(hub: FakeHub, tiny_config: ModelConfig, tmp_path: Path, capsys) -> None:
    assert main(tiny_args(hub, tmp_path)) == 0
    config = ModelConfig.preset("tiny", tmp_path)
    config.files.delta_path.write_bytes(config.files.delta_path.read_bytes()[:50_000])  # a damaged file
    capsys.readouterr()
    assert main(tiny_args(hub, tmp_path)) == 1
    assert "Present but wrong" in capsys.readouterr().err and config.files.delta_path.stat().st_size == 50_000
    assert main(tiny_args(hub, tmp_path, "--replace")) == 0
    assert sha256(config.files.delta_path) == sha256(tiny_config.files.delta_path)


def test_vicuna_from_a_local_folder_is_linked(hub: FakeHub, tiny_config: ModelConfig, tmp_path: Path) -> None:
    mine = tmp_path / "my_vicuna"
    shutil.copytree(tiny_config.files.vicuna_dir, mine)
    assert main(tiny_args(hub, tmp_path / "checkpoints", vicuna=("--vicuna", str(mine)))) == 0
    config = ModelConfig.preset("tiny", tmp_path / "checkpoints")
    assert config.files.vicuna_dir.is_symlink() and config.files.vicuna_dir.resolve() == mine.resolve()
    assert not hub.requests(path_contains=VICUNA)

    (mine / "model.safetensors").unlink()  # a folder that is not usable is refused before any download
    assert main(tiny_args(hub, tmp_path / "other", vicuna=("--vicuna", str(mine)))) == 1


def test_default_repos_and_the_cli_entry_point_honour_hf_endpoint(hub: FakeHub, tmp_path: Path) -> None:
    """`python -m pandagpt_demo.weights download --model 7b` in a fresh process, HF_ENDPOINT from the environment only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env |= {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf_home"), "PANDAGPT_IMAGEBIND_URL": hub.imagebind_url}
    command = [sys.executable, "-m", "pandagpt_demo.weights", "download", "--model", "7b", "--dir", str(tmp_path)]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    # None of the 7b Vicuna candidates is on the fake Hub (401, as the real Hub answers for unknown repos): each is named.
    assert "No source of vicuna_7b_v0 can be used, so nothing was downloaded" in result.stderr
    for repo in ("openllmplayground/vicuna_7b_v0", "Vision-CAIR/vicuna-7b", "huggyllama/llama-7b"):
        assert f"{hub.endpoint}/api/models/{repo}/revision/main" in result.stderr
    assert "--vicuna DIR" in result.stderr
    assert hub.requests("HEAD", "/files/imagebind_huge.pth")  # the ImageBind URL override was used
    assert not hub.requests("GET", "/files/") and not (tmp_path / "imagebind_huge.pth").exists()


def test_download_7b_with_no_flag_falls_back_to_vision_cair_when_pandagpts_vicuna_is_missing(
    hub: FakeHub, seven_b: None, tiny_config: ModelConfig, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, base, _ = candidate_repos()
    assert (first, second) == ("openllmplayground/vicuna_7b_v0", "Vision-CAIR/vicuna-7b")
    hub.add_folder(second, write_bin_copy(tiny_config.files.vicuna_dir, tmp_path / "vision_cair"))  # .bin shards, as that repo holds
    hub.add_folder(WEIGHT_SOURCES["7b"].delta[0].ids[0], tiny_config.files.delta_path.parent)
    monkeypatch.setenv("PANDAGPT_IMAGEBIND_URL", hub.imagebind_url)
    directory = tmp_path / "checkpoints"
    assert main(["download", "--model", "7b", "--dir", str(directory)]) == 0
    out = capsys.readouterr().out
    plan = out[out.index("Plan:") : out.index("To download:")]
    assert f"vicuna_7b_v0: {second} (MiniGPT-4's authors): 7 files from {hub.endpoint}/{second}" in plan
    assert f"    skipped {first} (PandaGPT's authors (named by their Space)): not found or private (HTTP 401)" in plan
    assert not hub.requests(path_contains=base)  # the first usable candidate is taken: later ones are not even probed

    config = ModelConfig.preset("7b", directory)
    assert sorted(p.name for p in config.files.vicuna_dir.glob("*.bin")) == ["pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"]
    entry = json.loads((directory / "manifest.json").read_text())["components"]["vicuna_7b_v0"]
    assert entry["source"] == f"repo:{second}" and entry["flags"] == []
    assert main(["check", "--dir", str(directory), "--model", "7b", "--hash"]) == 0
    model = PandaGPT.load(config)
    original = PandaGPT.load(tiny_config)
    assert torch.equal(model.llm.get_input_embeddings().weight, original.llm.get_input_embeddings().weight)


def test_with_no_merged_vicuna_usable_the_default_builds_it_from_llama_and_the_delta(
    hub: FakeHub, seven_b: None, tiny_config: ModelConfig, llama_pair, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, base, vicuna_delta = candidate_repos()
    hub.add_folder(second, tiny_config.files.vicuna_dir, gated=True)  # listed to anyone, downloadable by no one here
    hub.add_folder(base, llama_pair[0])
    hub.add_folder(vicuna_delta, llama_pair[1])
    hub.add_folder(WEIGHT_SOURCES["7b"].delta[0].ids[0], tiny_config.files.delta_path.parent)
    monkeypatch.setenv("PANDAGPT_IMAGEBIND_URL", hub.imagebind_url)
    assert main(["download", "--model", "7b", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    plan = out[out.index("Plan:") : out.index("To download:")]
    assert f"vicuna_7b_v0: {base} + {vicuna_delta}, built here (LLaMA + LMSYS's Vicuna v0 delta): LLaMA from" in plan
    assert f"skipped {first} (PandaGPT's authors (named by their Space)): not found or private (HTTP 401)" in plan
    assert f"skipped {second} (MiniGPT-4's authors): gated, no access (HTTP 401)" in plan
    assert not hub.requests(path_contains=f"/{second}/resolve/")  # the gated one: nothing fetched
    entry = json.loads((tmp_path / "manifest.json").read_text())["components"]["vicuna_7b_v0"]
    assert entry["source"] == f"from-delta:{base}+{vicuna_delta}"
    assert PandaGPT.load(ModelConfig.preset("7b", tmp_path)).llm.config.vocab_size == 32001


def test_a_folder_laid_out_as_pandagpts_repository_is_checked_loaded_and_completed_in_place(
    hub: FakeHub, seven_b: None, tiny_config: ModelConfig, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PandaGPT's README: pretrained_ckpt/{imagebind_ckpt/imagebind_huge.pth, vicuna_ckpt/7b_v0/, pandagpt_ckpt/7b/pytorch_model.pt}."""
    clone = tmp_path / "PandaGPT"
    folder = clone / "pretrained_ckpt"
    (folder / "imagebind_ckpt").mkdir(parents=True)
    shutil.copy(tiny_config.files.imagebind_path, folder / "imagebind_ckpt" / "imagebind_huge.pth")
    shutil.copytree(tiny_config.files.vicuna_dir, folder / "vicuna_ckpt" / "7b_v0")
    (folder / "pandagpt_ckpt" / "13b").mkdir(parents=True)  # PandaGPT's repo makes folders for both sizes

    # The delta is missing: download completes the set in PandaGPT's layout, keeping what is there.
    hub.add_folder(WEIGHT_SOURCES["7b"].delta[0].ids[0], tiny_config.files.delta_path.parent)
    monkeypatch.setenv("PANDAGPT_IMAGEBIND_URL", hub.imagebind_url)
    assert main(["download", "--model", "7b", "--dir", str(clone)]) == 0
    out = capsys.readouterr().out
    assert "imagebind_ckpt/imagebind_huge.pth: OK, kept" in out and "vicuna_ckpt/7b_v0: OK, kept" in out
    assert (folder / "pandagpt_ckpt" / "7b" / "pytorch_model.pt").is_file() and (folder / "manifest.json").is_file()
    assert not hub.requests("GET", "/files/") and not (clone / "imagebind_huge.pth").exists()

    assert main(["check", "--dir", str(clone), "--model", "7b"]) == 0
    assert "vicuna_ckpt/7b_v0/config.json" in capsys.readouterr().out
    from pandagpt_demo.app import server as app
    from pandagpt_demo.app.runtime import choose_model

    choice = choose_model(app.parse_args(["--checkpoints", str(clone), "--model", "7b", "--device", "cpu"]))
    assert choice.fallback_reason is None and choice.config.name == "7b"
    assert choice.config.files.vicuna_dir == folder / "vicuna_ckpt" / "7b_v0"
    assert PandaGPT.load(choice.config).llm.config.hidden_size == 64


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 20 MiB tmpfs: room for the tiny ImageBind (7 MB), not for the tiny Vicuna (20 MB) after it."""
    mount = tmp_path / "small_disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mount)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"a small tmpfs cannot be mounted here: {made.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_disk_that_fills_up_mid_download_is_said_and_the_parts_in_place_are_kept(
    hub: FakeHub, tiny_config: ModelConfig, small_disk: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The disk check passed (as if another program filled the disk after it): the real write then fails with ENOSPC.
    monkeypatch.setattr(download_module.shutil, "disk_usage", lambda path: SimpleNamespace(total=10**12, used=0, free=10**12))
    assert main(tiny_args(hub, small_disk)) == 1
    error = capsys.readouterr().err
    assert "the disk filled up while writing it" in error and "No space left on device" in error
    assert "Vicuna v0 tiny" in error and "Already in place and kept: imagebind_huge.pth." in error
    config = ModelConfig.preset("tiny", small_disk)
    assert config.files.imagebind_path.is_file() and not config.files.vicuna_dir.exists()

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    fetched = len(hub.requests("GET", "/files/"))
    assert main(tiny_args(hub, small_disk)) == 0
    assert len(hub.requests("GET", "/files/")) == fetched  # ImageBind was not fetched again
    assert sha256(config.files.vicuna_dir / "model.safetensors") == sha256(tiny_config.files.vicuna_dir / "model.safetensors")


def test_app_download_flag(hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from pandagpt_demo.app import server as app

    assert app.parse_args(["--download", "--model", "7b"]).download
    monkeypatch.setenv("PANDAGPT_IMAGEBIND_URL", hub.imagebind_url)
    with pytest.raises(SystemExit):
        app.download_first(app.parse_args(["--download", "--model", "13b", "--checkpoints", str(tmp_path)]))
    assert "Vision-CAIR/vicuna" in capsys.readouterr().err
