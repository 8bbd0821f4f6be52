"""What one maximum-size /v1 request costs the server: its peak memory and how long it stalls the
event loop, for this tree and for an earlier revision (the original approach) in the same run.

    python benchmarks/bench_request_memory.py                      # against the revision before issue 32's body reading
    python benchmarks/bench_request_memory.py --base HEAD~3 --file-mb 2 --json out.json

Each app (`app.py --model tiny`, `--max-file-mb F`) is started in turn and sent the same body: 16
noise PNGs of nearly F MB each as base64 data URLs (the most the earlier revision's limit let in:
F × 4/3 × 16 files + 1 MB; this tree is given that limit with --max-request-mb). Measured: the app
process's peak RSS during the request over its RSS before it (VmHWM after resetting it with
`echo 5 > /proc/PID/clear_refs`), as a multiple of the body's size; and the slowest answer to
`GET /v1/models`, asked every 20 ms while the request is read, parsed and answered (a stalled
event loop stalls every client, the page's included).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
BASE = "e6a236e"  # main before the body was spooled (issue 32)
FILES = 16


def noise_png(megabytes: float) -> bytes:
    """A PNG of random pixels (incompressible) just under `megabytes`."""
    side = int((megabytes * 2**20 * 0.97 / 3) ** 0.5)
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


def body(megabytes: float) -> bytes:
    url = "data:image/png;base64," + base64.b64encode(noise_png(megabytes)).decode()
    parts = [{"type": "text", "text": "What is in these images?"}] + [{"type": "image_url", "image_url": {"url": url}}] * FILES
    request = {"model": "pandagpt-tiny", "messages": [{"role": "user", "content": parts}], "max_tokens": 4, "temperature": 0}
    return json.dumps(request).encode()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def measure(tree: Path, flags: list[str], payload: bytes, uploads: Path) -> dict:
    """Start the app of `tree`, send `payload` once, and report its memory and loop stall."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "app.py", "--model", "tiny", "--port", str(port), *flags]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # each app imports its own tree's package
    process = subprocess.Popen(command, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**env, "GRADIO_TEMP_DIR": str(uploads)})
    try:
        deadline = time.time() + 300
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).json().get("ready"):
                    break
            except (httpx.HTTPError, ValueError):
                pass
            if process.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"the app of {tree} did not start")
            time.sleep(0.5)
        httpx.get(f"{base}/v1/models", timeout=10)
        time.sleep(1)
        before = status_kb(process.pid, "VmRSS")
        Path(f"/proc/{process.pid}/clear_refs").write_text("5")
        stalls: list[float] = []
        done = threading.Event()

        def ping() -> None:
            while not done.is_set():
                start = time.perf_counter()
                httpx.get(f"{base}/v1/models", timeout=60)
                stalls.append(time.perf_counter() - start)
                time.sleep(0.02)

        pinger = threading.Thread(target=ping, daemon=True)
        pinger.start()
        start = time.perf_counter()
        response = httpx.post(f"{base}/v1/chat/completions", content=payload, headers={"content-type": "application/json"}, timeout=600)
        seconds = time.perf_counter() - start
        done.set()
        pinger.join()
        peak = status_kb(process.pid, "VmHWM")
        return {
            "status": response.status_code,
            "seconds": round(seconds, 2),
            "rss_before_mb": round(before / 1024, 1),
            "peak_increase_mb": round((peak - before) / 1024, 1),
            "peak_increase_x_body": round((peak - before) * 1024 / len(payload), 2),
            "slowest_models_s": round(max(stalls), 3),
        }
    finally:
        process.kill()
        process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default=BASE, help="the earlier revision to compare with (git rev)")
    parser.add_argument("--file-mb", type=float, default=8.0, help="--max-file-mb of both apps; each image is just under it")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    payload = body(args.file_mb)
    limit = int(args.file_mb * 2**20 * 4 / 3) * FILES + 2**20  # the earlier revision's body limit
    assert len(payload) <= limit, "the body fits both apps' limits"
    print(f"body: {len(payload) / 2**20:.1f} MB ({FILES} images of {args.file_mb:g} MB as data URLs); limit {limit / 2**20:.1f} MB")
    work = Path(tempfile.mkdtemp(prefix="bench-request-"))
    base_tree = work / "base"
    subprocess.run(["git", "worktree", "add", "--detach", str(base_tree), args.base], cwd=REPO, check=True, capture_output=True)
    try:
        flags = ["--max-file-mb", str(args.file_mb)]
        results = {
            f"base {args.base} (body held, parsed on the event loop)": measure(base_tree, flags, payload, work / "uploads-base"),
            "this tree (body spooled, parsed in a thread)": measure(
                REPO, [*flags, "--max-request-mb", str(limit / 2**20)], payload, work / "uploads"
            ),
        }
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=REPO, check=False, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    for name, result in results.items():
        print(f"{name}: {result}")
    old, new = results.values()
    print(
        f"peak RSS increase: {old['peak_increase_mb']} MB -> {new['peak_increase_mb']} MB "
        f"({old['peak_increase_mb'] / max(new['peak_increase_mb'], 0.1):.1f}x less); "
        f"slowest /v1/models during the request: {old['slowest_models_s']} s -> {new['slowest_models_s']} s"
    )
    if args.json:
        args.json.write_text(json.dumps({"body_bytes": len(payload), "results": results}, indent=2))


if __name__ == "__main__":
    main()
