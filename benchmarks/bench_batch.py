"""The batch runner against the approach it replaces, in the same run: a client asking `/v1` one
request at a time (the official `openai` package, each image as a data URL).

    python benchmarks/bench_batch.py                                  # 64 image questions, the tiny model
    python benchmarks/bench_batch.py --model 7b --checkpoints DIR --quantize 4bit --requests 16 --json out.json

Both answer the same 64 requests (distinct noise images, one question, greedy, `--max-tokens`
each). The batch runner (`BatchRunner`, in this process, `--concurrency` in flight on the app's
engine) is timed from its first request to its last line written; the client from its first
request to its last answer, against `app.py` started with the same model (start-up excluded from
both). Printed: requests per second, tokens per second, and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import openai
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pandagpt_demo.app.answering.settings import AnswerSettings  # noqa: E402
from pandagpt_demo.app.batch.input_lines import read_lines, with_local_files  # noqa: E402
from pandagpt_demo.app.batch.make_input import write_input  # noqa: E402
from pandagpt_demo.app.batch.runner import BatchRunner, Tally  # noqa: E402
from pandagpt_demo.app.runtime import add_model_arguments, choose_model, load_with_progress, local_device  # noqa: E402
from pandagpt_demo.config import ServingConfig  # noqa: E402
from pandagpt_demo.serving.start import start_engine  # noqa: E402


def images(folder: Path, count: int) -> None:
    for n in range(count):
        pixels = np.random.default_rng(n).integers(0, 256, (160, 160, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"noise-{n:03d}.png")


def flags_of(args: argparse.Namespace) -> list[str]:
    """The model flags both sides start with."""
    return [
        "--model",
        args.model,
        *(["--checkpoints", args.checkpoints] if args.checkpoints else []),
        *(["--quantize", args.quantize] if args.quantize else []),
    ]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_at_a_time(args: argparse.Namespace, requests: Path, folder: Path) -> tuple[float, int, list[str]]:
    """The client's way: `/v1`, one request after another, against the app."""
    port = free_port()
    flags = flags_of(args)
    env = {**os.environ, "GRADIO_TEMP_DIR": str(folder / "uploads")}
    app = subprocess.Popen(
        [sys.executable, "app.py", *flags, "--port", str(port)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=600)
        bodies = [with_local_files(line.body, requests.parent, 2**30) for line in read_lines(requests)]
        answers, tokens = [], 0
        start = time.perf_counter()
        for body in bodies:
            answer = client.chat.completions.create(**body)
            answers.append(answer.choices[0].message.content)
            tokens += answer.usage.completion_tokens
        return time.perf_counter() - start, tokens, answers
    finally:
        app.kill()
        app.wait(30)


def batch(args: argparse.Namespace, requests: Path) -> tuple[float, int, dict[str, str]]:
    """The batch runner's way: every request on the engine, `--concurrency` in flight."""
    model_flags = argparse.ArgumentParser()
    add_model_arguments(model_flags)  # the app's own model flags, parsed as the app parses them
    namespace = model_flags.parse_args(flags_of(args))
    namespace.device = local_device(namespace.device)
    choice = choose_model(namespace)
    model = load_with_progress(choice)
    engine = start_engine(model, ServingConfig(max_batch=args.concurrency, max_waiting=args.concurrency, stall_timeout=None, answer_timeout=None))
    output = requests.parent / "results.jsonl"
    try:
        runner = BatchRunner(model, engine, f"pandagpt-{choice.config.name}", AnswerSettings(), workers=args.concurrency)
        tally = Tally()
        start = time.perf_counter()
        runner.run(read_lines(requests), requests.parent, output, tally)
        seconds = time.perf_counter() - start
    finally:
        engine.close()
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    return seconds, tally.tokens, {line["custom_id"]: line["response"]["body"]["choices"][0]["message"]["content"] for line in lines}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--checkpoints")
    parser.add_argument("--quantize")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        (folder / "images").mkdir()
        images(folder / "images", args.requests)
        requests = folder / "requests.jsonl"
        write_input(requests, f"pandagpt-{args.model}", [str(folder / "images")], "What is in this picture?", None, args.max_tokens)
        batch_s, batch_tokens, batch_answers = batch(args, requests)
        client_s, client_tokens, client_answers = one_at_a_time(args, requests, folder)
    same = sum(batch_answers[f"request-{n + 1}"] == text for n, text in enumerate(client_answers))
    result = {
        "model": args.model,
        "requests": args.requests,
        "max_tokens": args.max_tokens,
        "concurrency": args.concurrency,
        "batch_seconds": round(batch_s, 2),
        "batch_requests_per_s": round(args.requests / batch_s, 2),
        "batch_tokens_per_s": round(batch_tokens / batch_s, 1),
        "client_seconds": round(client_s, 2),
        "client_requests_per_s": round(args.requests / client_s, 2),
        "client_tokens_per_s": round(client_tokens / client_s, 1),
        "speedup": round(client_s / batch_s, 2),
        "same_answers": f"{same} of {args.requests}",
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
