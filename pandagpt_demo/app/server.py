"""The web app: flags, the optional download first, the model handle and the Gradio server (`python app.py --help`)."""

from __future__ import annotations

import argparse
import os
import sys

from pandagpt_demo.config import EXAMPLES_FILE, ServingConfig

from .runtime import ModelHandle, add_model_arguments, choose_model, setup_logging
from .ui import build_demo, on_zero_gpu


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Chat with PandaGPT about images, sounds, videos, thermal and depth images and IMU recordings.")
    add_model_arguments(parser)
    # Hugging Face Spaces says where to listen through Gradio's own variables.
    parser.add_argument(
        "--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), help="address to listen on (0.0.0.0 for every interface)"
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    parser.add_argument(
        "--concurrency", type=int, default=ServingConfig.max_batch, help="answers generated at the same time, decoded together in one batch"
    )
    parser.add_argument("--queue-size", type=int, default=ServingConfig.max_waiting, help="requests waiting beyond that; more are refused")
    parser.add_argument("--max-file-mb", type=float, default=200, help="uploads larger than this are refused before reading")
    parser.add_argument(
        "--download",
        action="store_true",
        help="first fetch the --model weights into --checkpoints (as `python -m pandagpt_demo.weights download`), then start",
    )
    return parser.parse_args(argv)


def download_first(args: argparse.Namespace) -> None:
    """`--download`: the weights command's default download for --model into --checkpoints; exits if it fails."""
    from pandagpt_demo.weights.cli import run_download
    from pandagpt_demo.weights.download import Request

    if args.model == "tiny":
        print("--download: the tiny model is written locally, nothing to download.")
        return
    if run_download(Request(model=args.model, directory=args.checkpoints)) != 0:
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging(args.log_level)
    if args.download:
        download_first(args)
    choice = choose_model(args)
    print(choice.banner.replace("**", ""))
    serving = ServingConfig(max_batch=None if on_zero_gpu() else args.concurrency, max_waiting=args.queue_size)  # ZeroGPU: no GPU outside a request
    handle = ModelHandle(choice, serving).start()
    demo = build_demo(handle)
    demo.queue(default_concurrency_limit=args.concurrency, max_size=args.queue_size)
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        max_file_size=int(args.max_file_mb * 1024 * 1024),  # bytes; Gradio refuses larger uploads unread
        allowed_paths=[str(EXAMPLES_FILE.parent)],
        show_error=True,
    )
