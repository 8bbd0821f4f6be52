"""The benchmark runs end to end on the CPU with the tiny model (a smoke test: no timing is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT


def test_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    command = [
        sys.executable,
        "benchmarks/bench_generate.py",
        "--size",
        "tiny",
        "--device",
        "cpu",
        "--new-tokens",
        "4",
        "--sessions",
        "1",
        "2",
        "--json",
        str(out),
    ]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "decode_tok_s_batch1" in result.stdout and "ratio" in result.stdout
    numbers = json.loads(out.read_text())
    for path in ("original", "project"):
        assert {"ttft_ms", "decode_tok_s_batch1", "aggregate_tok_s_1", "aggregate_tok_s_2", "worst_first_token_ms_2"} <= set(numbers[path])
        assert all(numbers[path][key] > 0 for key in ("ttft_ms", "decode_tok_s_batch1", "aggregate_tok_s_2"))
    assert {f"encode_ms_{m}" for m in ("image", "audio", "video", "thermal", "depth", "imu")} <= set(numbers["project"])


def test_gpu_check_script_rehearses_on_cpu(tmp_path: Path) -> None:
    """benchmarks/gpu_check.sh (what a lent GPU runs) works end to end: writes a model set, checks it, answers."""
    env = {**os.environ, "PYTHON": sys.executable, "DEVICE": "cpu", "OUT": str(tmp_path / "out"), "TMPDIR": str(tmp_path)}
    result = subprocess.run(["bash", "benchmarks/gpu_check.sh", "model", "tiny"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    log = (tmp_path / "out" / "model_tiny.log").read_text()
    assert "All present and plausible" in log
    assert "panda> " in log and "-m pandagpt_demo.chat" in log


def test_kv_cache_benchmark_smoke(tmp_path: Path) -> None:
    """The in-place batch cache it measures decodes the same greedy tokens as today's concatenating one,
    across a rebuild (spare 2, 6 steps), through gpu_check.sh's `kv` command."""
    env = {**os.environ, "PYTHON": sys.executable, "DEVICE": "cpu", "OUT": str(tmp_path)}
    command = ["bash", "benchmarks/gpu_check.sh", "kv", "tiny", "--rows", "3", "--length", "20", "--steps", "6", "--spare", "2"]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    numbers = json.loads((tmp_path / "kv_tiny.json").read_text())
    assert numbers["same_tokens"] is True
    assert numbers["concat_ms_per_step"] > 0 and numbers["in_place_ms_per_step"] > 0


def test_gpu_session_rehearses_on_cpu(tmp_path: Path) -> None:
    """benchmarks/gpu_session.sh (a lent GPU's two calls) runs end to end on the CPU with tiny models:
    the load's peak memory, the benchmark with its fidelity check, and the app under streaming /v1 clients."""
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "DEVICE": "cpu",
        "LOAD_SIZE": "tiny",
        "BENCH_SIZE": "tiny",
        "MODELS": str(tmp_path / "models"),
        "OUT": str(tmp_path / "out"),
        "BENCH_FLAGS": "--new-tokens 4 --sessions 1 2 --fidelity-tokens 8",
        "CLIENTS": "3",
        "APP_FLAGS": "--max-tokens 8 --port 7893",
    }
    for phase in ("1", "2"):
        result = subprocess.run(["bash", "benchmarks/gpu_session.sh", phase], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
    out = tmp_path / "out"
    log = (out / "session_1.log").read_text() + (out / "session_2.log").read_text()
    assert "exit 124" not in log and log.count(": exit 0 after") == 6, log
    load = json.loads((out / "load_tiny.json").read_text())
    assert load["returncode"] == 0 and load["peak_host_rss_gib"] > 0
    bench = json.loads((out / "bench_tiny.json").read_text())["project"]
    assert bench["fidelity_same_tokens"] == 1.0 and bench["fidelity_logits_max_abs"] < 1e-4
    app = json.loads((out / "app_tiny.json").read_text())
    assert app["complete"] == 3 and app["tokens_per_answer"] == [8, 8, 8] and app["errors"] == []


def test_load_benchmark_smoke(tmp_path: Path) -> None:
    """bench_load.py writes the tiny set, loads it the old way and the new, each in its own process,
    and both give the same model (size, dtype) with their peak memory."""
    out = tmp_path / "load.json"
    command = [sys.executable, "benchmarks/bench_load.py", "--size", "tiny", "--dir", str(tmp_path / "set"), "--json", str(out)]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "peak RSS / model size" in result.stdout
    before, after = json.loads(out.read_text())["results"]
    assert (before["loader"], after["loader"]) == ("before", "after")
    assert before["model_bytes"] == after["model_bytes"] > 0 and before["dtypes"] == after["dtypes"] == ["torch.bfloat16"]
    assert all(r["peak_rss"] >= r["rss_before"] > 0 and r["max_RssAnon"] > 0 for r in (before, after))


def test_answer_each_benchmark_smoke() -> None:
    """benchmarks/bench_each.py runs end to end, and its check (same greedy tokens both ways) holds."""
    command = [sys.executable, "benchmarks/bench_each.py", "--files", "2", "--new-tokens", "6", "--repeats", "1"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "answer each" in result.stdout and "ratio" in result.stdout
