"""Replicas ask for GPUs when the Ray cluster has them, whatever the front end's own machine has
(a front end without a GPU joining a GPU cluster with `--ray-address` is the usual set-up)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

pytest.importorskip("ray.serve", reason="replicas need ray[serve] (requirements-test.txt)")

# A local cluster that declares GPUs it does not have: Ray schedules by declared resources.
PROBE = """
import sys, ray
from pathlib import Path
from pandagpt_demo.config import AUTO_DEVICE, ModelConfig, ReplicaConfig, ServingConfig
from pandagpt_demo.serving.replicas import Cluster

ray.init(num_cpus=1, num_gpus=int(sys.argv[1]), include_dashboard=False, log_to_driver=False, configure_logging=False)
try:
    for asked in (AUTO_DEVICE, "cpu"):
        cluster = Cluster(ModelConfig.tiny(Path("unused")).updated(device=asked), ServingConfig(), ReplicaConfig()).connect()
        print(asked, cluster.config.run.device, cluster._deployment().ray_actor_options.get("num_gpus", 0))
finally:
    ray.shutdown()
"""


@pytest.mark.parametrize("gpus", [1, 0])
def test_replicas_follow_the_clusters_gpus_unless_told(gpus: int) -> None:
    result = subprocess.run([sys.executable, "-c", PROBE, str(gpus)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()[-2:]
    expected_auto = "auto cuda 1" if gpus else "auto cpu 0"
    assert lines == [expected_auto, "cpu cpu 0"]  # an explicit --device is kept
