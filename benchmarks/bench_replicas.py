"""Aggregate tokens/s and the slowest first token of the launched app with 1 and 2 Ray Serve
replicas (and the single process without Ray), measured in one run with the same clients.

    python benchmarks/bench_replicas.py --model tiny --clients 16 --tokens 64

On a 2-core CPU with the tiny model this measures the replica path's overhead and how it scales
when replicas share the same cores, not GPU speed: on a machine with one GPU per replica each
replica decodes its own batch.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(model: str, flags: list[str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "app.py", "--model", model, "--port", str(port), "--log-level", "WARNING", *flags]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "readyz", timeout=2).json().get("ready"):
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit(f"the app with {flags} did not get ready")


def measure(url: str, model_id: str, clients: int, tokens: int) -> tuple[float, float]:
    """(aggregate tokens/s, slowest first token in s) for `clients` streaming at once."""
    v1 = openai.OpenAI(base_url=url + "v1", api_key="none", max_retries=0)
    firsts: list[float] = []
    counts: list[int] = []

    def one(i: int) -> None:
        started, seen, first = time.perf_counter(), 0, None
        stream = v1.chat.completions.create(
            model=model_id,
            messages=[{"role": "user", "content": f"Tell me story {i}."}],
            max_tokens=tokens,
            temperature=0.0,
            stream=True,
            stream_options={"include_usage": True},
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content and first is None:
                first = time.perf_counter() - started
            if chunk.usage is not None:
                seen = chunk.usage.completion_tokens
        firsts.append(first or 0.0)
        counts.append(seen)

    one(-1)  # warm
    started = time.perf_counter()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - started), max(firsts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    results = {}
    for label, flags in (("one process", []), ("1 replica", ["--replicas", "1"]), ("2 replicas", ["--replicas", "2"])):
        process, url = launch(args.model, ["--concurrency", str(args.clients), *flags])
        try:
            results[label] = measure(url, f"pandagpt-{args.model}", args.clients, args.tokens)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(120)
        rate, first = results[label]
        print(f"{label:12s} {rate:8.1f} tokens/s   slowest first token {first:6.2f} s", flush=True)
    base = results["one process"][0]
    for label, (rate, _) in results.items():
        print(f"{label:12s} {rate / base:5.2f}x the single process's tokens/s")
    print(f"({os.cpu_count()} CPU cores; see the module docstring for what this measures)")


if __name__ == "__main__":
    main()
