"""Compiled steps kept in a folder are reused by the next process: a restart compiles nothing again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

COMPILE_ONCE = """
import json, sys
from pathlib import Path
import torch
from torch._dynamo.utils import counters
from pandagpt_demo.serving.compile_cache import use_compile_cache

use_compile_cache(Path(sys.argv[1]))
step = torch.compile(lambda x: torch.nn.functional.silu(x) * x.sum(), backend="inductor")
step(torch.randn(8, 8))
print(json.dumps(dict(counters["inductor"])))
"""


def compile_in_a_new_process(folder: Path, environ: dict[str, str]) -> dict[str, int]:
    result = subprocess.run(
        [sys.executable, "-c", COMPILE_ONCE, str(folder)], cwd=REPO_ROOT, env=environ, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_second_start_reuses_what_the_first_compiled(tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if k not in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")}
    first = compile_in_a_new_process(tmp_path / "cache", environ)
    assert first.get("fxgraph_cache_miss", 0) >= 1 and not first.get("fxgraph_cache_hit")
    assert any((tmp_path / "cache" / "inductor").iterdir())
    second = compile_in_a_new_process(tmp_path / "cache", environ)
    assert second.get("fxgraph_cache_hit", 0) >= 1 and not second.get("fxgraph_cache_miss")


def test_a_cache_folder_the_user_set_is_kept(tmp_path: Path) -> None:
    environ = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "mine")}
    environ.pop("TRITON_CACHE_DIR", None)
    compile_in_a_new_process(tmp_path / "cache", environ)
    assert any((tmp_path / "mine").iterdir()) and not (tmp_path / "cache" / "inductor").exists()
    assert (tmp_path / "cache" / "triton").is_dir()
