"""`python -m pandagpt_demo.batch -i requests.jsonl -o results.jsonl`: many requests answered offline
on the app's engine, in OpenAI's batch format (input_lines.py, runner.py); `make` writes such an
input for a set of files (make_input.py); `--embeddings` keeps each file's ImageBind vector (vectors.py).

A progress bar on a terminal (done, failed, tokens per second, time left), a log line every 10 s
otherwise; Ctrl-C stops cleanly, keeping every finished line; a rerun with the same output answers
only what it does not hold yet.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from tqdm import tqdm

from pandagpt_demo.app.answering.settings import AnswerSettings
from pandagpt_demo.config import ServingConfig
from pandagpt_demo.errors import UserError
from pandagpt_demo.serving.compile_cache import use_compile_cache
from pandagpt_demo.serving.start import start_engine

from ..runtime import add_model_arguments, choose_model, load_with_progress, local_device, setup_logging
from .input_lines import read_lines
from .make_input import write_input
from .runner import Answered, BatchLimits, BatchRunner, Tally
from .vectors import VectorTable

log = logging.getLogger(__name__)
LOG_EVERY = 10.0  # seconds between progress lines when stderr is not a terminal


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pandagpt_demo.batch", description="Answer a batch of chat-completion requests offline (OpenAI's batch format)."
    )
    add_model_arguments(parser)
    parser.add_argument("-i", "--input", type=Path, required=True, help="requests, one JSON line each: custom_id, method, url, body")
    parser.add_argument("-o", "--output", type=Path, required=True, help="results, one JSON line per request in completion order; a rerun resumes it")
    parser.add_argument("--concurrency", type=int, default=8, help="requests decoded together (the engine's batch; default 8)")
    parser.add_argument("--max-file-mb", type=float, default=200, help="the largest media file a request may name")
    parser.add_argument(
        "--embeddings", type=Path, metavar="VECTORS.npy", help="also write each file's ImageBind vector (and a .jsonl index beside it)"
    )
    parser.add_argument("--labels", default="", help="with --embeddings: comma-separated labels; the index gets each file's zero-shot probabilities")
    return parser.parse_args(argv)


def parse_make_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pandagpt_demo.batch make", description="Write a batch's input: one request per file, or per CSV row."
    )
    parser.add_argument("files", nargs="*", help="files, folders or globs (quoted), one request each")
    parser.add_argument("--question", help="the question asked of every file")
    parser.add_argument("--csv", type=Path, help="instead: a CSV with columns file,question (paths relative to it)")
    parser.add_argument("-o", "--output", type=Path, default=Path("requests.jsonl"))
    parser.add_argument("--model", default="7b", help="the model the requests are for (7b, 13b, tiny): their `model` is pandagpt-<this>")
    parser.add_argument("--max-tokens", type=int, default=AnswerSettings.max_new_tokens)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 (greedy, the default): reruns give the same answers")
    return parser.parse_args(argv)


def make(argv: list[str]) -> None:
    args = parse_make_args(argv)
    try:
        count = write_input(args.output, f"pandagpt-{args.model}", args.files, args.question, args.csv, args.max_tokens, args.temperature)
    except (UserError, OSError, KeyError) as error:
        sys.exit(f"error: {error}")
    print(f"{count} requests written to {args.output}", file=sys.stderr)


def run(argv: list[str]) -> None:
    args = parse_args(argv)
    setup_logging(args.log_level)
    if not args.input.is_file():
        sys.exit(f"error: the input {args.input} is not a file")
    use_compile_cache(args.compile_cache)
    args.device = local_device(args.device)
    choice = choose_model(args)
    print(choice.banner.replace("**", ""), file=sys.stderr)
    model = load_with_progress(choice)
    engine = start_engine(model, ServingConfig(max_batch=args.concurrency, max_waiting=args.concurrency, stall_timeout=None, answer_timeout=None))
    runner = BatchRunner(
        model, engine, f"pandagpt-{choice.config.name}", AnswerSettings(), BatchLimits(max_file_bytes=int(args.max_file_mb * 2**20)), args.concurrency
    )
    table = VectorTable() if args.embeddings else None
    tally = Tally()
    shown = Progress(tally)

    def on_answer(answer: Answered) -> None:
        shown.update()
        if table is not None:
            table.add(answer)

    def interrupted(signum: int, frame: object) -> None:
        """Ctrl-C: the run stops at its next token (a second one stops this process at once)."""
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("\nstopping: the answers in flight are dropped (a rerun asks them again); every finished line is kept", file=sys.stderr)
        runner.stop()

    worker = threading.Thread(target=runner.run, args=(read_lines(args.input), args.input.parent, args.output, tally, on_answer), name="batch-run")
    signal.signal(signal.SIGINT, interrupted)  # a flag, not an exception raised wherever the main thread happens to be
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.5)
            shown.tick()
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        shown.close()
        engine.close()
    print(f"{args.output}: {tally.line()}; {tally.skipped} answered before", file=sys.stderr)
    if table is not None:
        labels = [label.strip() for label in args.labels.split(",") if label.strip()]
        index = table.write(args.embeddings, model, labels)
        print(f"{len(table.vectors)} vectors written to {args.embeddings} (index: {index})", file=sys.stderr)


class Progress:
    """A tqdm bar on a terminal, else a log line every LOG_EVERY seconds."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.bar = tqdm(total=None, unit="request", desc="batch") if sys.stderr.isatty() else None
        self.last = 0.0

    def update(self) -> None:
        if self.bar is not None:
            self.bar.total = self.tally.total - self.tally.skipped
            self.bar.n = self.tally.done + self.tally.failed
            self.bar.set_postfix_str(self.tally.line(), refresh=True)

    def tick(self) -> None:
        if self.bar is None and time.monotonic() - self.last >= LOG_EVERY and self.tally.total:
            self.last = time.monotonic()
            log.info("batch: %s", self.tally.line())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["make"]:
        make(argv[1:])
    else:
        run(argv)
