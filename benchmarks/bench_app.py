"""The app itself under load: start `app.py`, time it to ready, then many streaming /v1 clients at once.

    python benchmarks/bench_app.py --clients 16 --json app.json -- --model 7b --checkpoints /tmp/random_7b
    python benchmarks/bench_app.py --clients 2 --max-tokens 8 -- --model tiny    # CPU smoke run
    python benchmarks/bench_app.py --single 3 --clients 16 --max-tokens 32 -- --checkpoints DIR   # a CPU machine, 7B

Everything after `--` goes to `app.py` (compile stays on unless `--no-compile` is among them).
Measured: seconds from the process start to `/readyz` saying ready (model load and the compiling
warm-up included); then every client sends its own image (a picture of its own colour) with one
question through `/v1/chat/completions` with `stream: true`, all at once: every answer must end with
a finish reason and a usage count; aggregate tokens/s over the wall time of the whole wave, and the
slowest first token (first non-empty content) among the clients.

With `--surfaces`, one image question goes through `/chat` (gradio_client) and one through the page
(Debian's Chromium, as the browser tests drive it) before anything else: the same model answers
every surface. With `--single N`, N questions go first, one at a time, each with an image and a 3 s sound (the
first answer is where a warm-up missing from the start would show): each one's first token and
decode tokens/s, one session's figures against the wave's. The app's peak resident memory (VmHWM)
and its memory now are read after those questions and at the end, before it is stopped.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


def image_data_url(index: int) -> str:
    """A 256x256 PNG of a colour of its own, so no two clients send the same file."""
    colour = ((index * 53) % 256, (index * 97) % 256, (index * 151) % 256)
    buffer = io.BytesIO()
    Image.new("RGB", (256, 256), colour).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def wait_ready(base: str, process: subprocess.Popen, limit_s: float) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < limit_s:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with {process.returncode} before it was ready")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).json().get("ready"):
                return time.perf_counter() - start
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"not ready after {limit_s} s")


def sound_base64(seconds: float = 3.0, rate: int = 16000) -> str:
    """A WAV of a 440 Hz tone, base64, for an `input_audio` part."""
    import math
    import struct
    import wave

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes(b"".join(struct.pack("<h", int(12000 * math.sin(2 * math.pi * 440 * i / rate))) for i in range(int(seconds * rate))))
    return base64.b64encode(buffer.getvalue()).decode()


def client(base: str, model: str, index: int, max_tokens: int, start: float, result: dict, sound: bool = False) -> None:
    """One streaming chat completion; records its first-token time, usage and finish reason."""
    content = [{"type": "text", "text": "Describe this image."}, {"type": "image_url", "image_url": {"url": image_data_url(index)}}]
    if sound:
        content.append({"type": "input_audio", "input_audio": {"data": sound_base64(), "format": "wav"}})
    body = {
        "model": model,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": max_tokens,
        "temperature": 0,
        "messages": [{"role": "user", "content": content}],
    }
    try:
        with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=600) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line.removeprefix("data: "))
                for choice in chunk.get("choices", []):
                    if choice["delta"].get("content") and "first_token_s" not in result:
                        result["first_token_s"] = time.perf_counter() - start
                    if choice["delta"].get("content"):
                        result["last_token_s"] = time.perf_counter() - start
                    if choice.get("finish_reason"):
                        result["finish_reason"] = choice["finish_reason"]
                if chunk.get("usage"):
                    result["completion_tokens"] = chunk["usage"]["completion_tokens"]
    except Exception as error:  # noqa: BLE001 - recorded, and the run fails below
        result["error"] = repr(error)


def other_surfaces(base: str) -> dict[str, dict]:
    """One image question through /chat and one through the page (image attached), each timed, its answer kept."""
    from gradio_client import Client, handle_file

    sys.path.insert(0, str(REPO))  # the browser tests' page moves
    from tests.app.web.browser import CHROMIUM, CHROMIUM_ARGS, MEDIA, ask, attach, open_app, sync_playwright, wait_for_answer

    start = time.perf_counter()
    chat = Client(base + "/", verbose=False).predict(
        "What is in this picture?", image=handle_file(str(MEDIA["image"])), max_new_tokens=16, temperature=0.0, api_name="/chat"
    )
    surfaces = {"chat": {"seconds": round(time.perf_counter() - start, 1), "answer": chat}}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            open_app(page, base + "/")
            start = time.perf_counter()
            attach(page, MEDIA["image"], rows=1)
            ask(page, "What is in this picture?")
            answer = wait_for_answer(page, 1)
            banner = next((line for line in page.locator("body").inner_text().splitlines() if line.startswith("Model")), "")
            surfaces["page"] = {"seconds": round(time.perf_counter() - start, 1), "answer": answer, "banner": banner}
        finally:
            browser.close()
    return surfaces


def process_memory(pid: int) -> dict[str, float]:
    """The process's peak and current resident memory, GB (from /proc; empty elsewhere)."""
    try:
        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    except OSError:
        return {}
    return {f"{key}_gb": round(int(status[key].split()[0]) * 1024 / 1e9, 2) for key in ("VmHWM", "VmRSS")}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--single", type=int, default=0, help="questions (image + sound) asked one at a time before the wave")
    parser.add_argument("--surfaces", action="store_true", help="first, one question through /chat and one through the page")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--port", type=int, default=7877)
    parser.add_argument("--ready-limit-s", type=float, default=900)
    parser.add_argument("--json", type=Path, default=Path("bench_app.json"))
    parser.add_argument("app_args", nargs=argparse.REMAINDER, help="-- then app.py's flags")
    args = parser.parse_args(argv)
    app_args = args.app_args[1:] if args.app_args[:1] == ["--"] else args.app_args
    base = f"http://127.0.0.1:{args.port}"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    process = subprocess.Popen([sys.executable, "app.py", "--port", str(args.port), *app_args], cwd=REPO, env=env)
    try:
        ready_s = wait_ready(base, process, args.ready_limit_s)
        model = httpx.get(f"{base}/v1/models", timeout=10).json()["data"][0]["id"]
        surfaces = other_surfaces(base) if args.surfaces else {}
        singles: list[dict] = []
        for index in range(args.single):
            singles.append({})
            client(base, model, 1000 + index, args.max_tokens, time.perf_counter(), singles[-1], sound=True)
        after_single = process_memory(process.pid)
        results: list[dict] = [{} for _ in range(args.clients)]
        start = time.perf_counter()
        threads = [threading.Thread(target=client, args=(base, model, i, args.max_tokens, start, results[i])) for i in range(args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - start
        memory = process_memory(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
    failed = [r for r in results if "error" in r or "finish_reason" not in r or "completion_tokens" not in r]
    tokens = sum(r.get("completion_tokens", 0) for r in results)
    summary = {
        "app_args": app_args,
        "ready_s": round(ready_s, 1),
        "clients": args.clients,
        "complete": args.clients - len(failed),
        "aggregate_tok_s": round(tokens / seconds, 1),
        "wave_s": round(seconds, 2),
        "slowest_first_token_ms": round(1000 * max(r.get("first_token_s", float("inf")) for r in results), 1),
        "tokens_per_answer": sorted(r.get("completion_tokens", 0) for r in results),
        "finish_reasons": sorted({r.get("finish_reason", "none") for r in results}),
        "errors": [r["error"] for r in failed if "error" in r],
        "single": [
            {
                "first_token_s": round(r.get("first_token_s", -1), 2),
                "decode_tok_s": round((r.get("completion_tokens", 1) - 1) / max(1e-9, r.get("last_token_s", 0) - r.get("first_token_s", 0)), 2),
                "error": r.get("error"),
            }
            for r in singles
        ],
        **memory,
        "after_single": after_single if args.single else {},
        "surfaces": surfaces,
    }
    args.json.write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    if failed:
        raise SystemExit(f"{len(failed)} of {args.clients} answers incomplete")
    return summary


if __name__ == "__main__":
    main()
