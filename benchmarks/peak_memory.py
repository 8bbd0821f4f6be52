"""Run a command and report its wall time, peak host memory and peak GPU memory, as JSON.

    python benchmarks/peak_memory.py --json load.json -- python -m pandagpt_demo.chat --model 7b ...

Host: the largest resident set any child process reached (the kernel's own high-water mark, so a
peak between two samples is not missed). GPU: memory in use on the device as `nvidia-smi` reports
it, sampled twice a second (absent without nvidia-smi). Why: loading must fit a Space's host
memory (about 15 GB on a10g-small) as well as its GPU, and only the process itself sees its peak.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path


def gpu_used_mib() -> int | None:
    """Memory in use on the first GPU, in MiB, or None without nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return None
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"], capture_output=True, text=True)
    return int(out.stdout.split()[0]) if out.returncode == 0 and out.stdout.strip() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    gpu_peak: list[int] = []
    done = threading.Event()

    def sample_gpu() -> None:
        while not done.wait(0.5):
            if (used := gpu_used_mib()) is not None:
                gpu_peak.append(used)

    gpu_before = gpu_used_mib()
    sampler = threading.Thread(target=sample_gpu, daemon=True)
    sampler.start()
    start = time.perf_counter()
    returncode = subprocess.run(command).returncode
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    result = {
        "command": command,
        "returncode": returncode,
        "wall_s": round(seconds, 1),
        "peak_host_rss_gib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, 2),  # ru_maxrss is in KiB
    }
    if gpu_peak:
        result["peak_gpu_used_gib"] = round((max(gpu_peak) - (gpu_before or 0)) / 1024, 2)
    args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps(result), file=sys.stderr)
    return returncode


if __name__ == "__main__":
    sys.exit(main())
