"""Choosing and loading the model for the app and the terminal chat: flags, tiny fallback, progress.

With no real checkpoints the demo still starts, on the tiny random model, and says so (with the
way to get the real files) wherever the model is named.
"""

from __future__ import annotations

import argparse
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from pandagpt_demo.config import MODEL_SIZES, QUANTIZATIONS, ModelConfig, ServingConfig
from pandagpt_demo.errors import Unavailable
from pandagpt_demo.model.pandagpt import PandaGPT, resolve_dtype
from pandagpt_demo.serving.engine import Engine
from pandagpt_demo.serving.monitor import EngineMonitor
from pandagpt_demo.serving.start import start_engine
from pandagpt_demo.weights.synthetic import make_tiny

log = logging.getLogger(__name__)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def setup_logging(level: str) -> None:
    """The standard `logging` to stderr: start-up, engine load, internal errors with tracebacks, requests at DEBUG."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("httpx", "httpcore"):  # Gradio's own HTTP calls, one line each: only their problems
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLevelName(level)))


LOAD_STEPS = 6  # the progress messages PandaGPT.load sends


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", default="INFO", choices=LOG_LEVELS, help="DEBUG also logs each request's life (default INFO)")
    parser.add_argument("--checkpoints", type=Path, default=Path("checkpoints"), help="folder of the released files (default: checkpoints/)")
    parser.add_argument("--model", choices=MODEL_SIZES, default="7b", help="model size (default 7b; tiny = random test weights)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device (default: cuda if available)")
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "float16", "bfloat16"), help="auto: float16 on CUDA, float32 on CPU")
    parser.add_argument("--quantize", choices=QUANTIZATIONS, help="load the LLM in 8 or 4 bits (bitsandbytes) to fit smaller GPUs")
    parser.add_argument(
        "--no-compile", dest="compile", action="store_false", help="on CUDA, skip compiling the decode steps: ready minutes sooner, decodes slower"
    )


@dataclass(frozen=True)
class ModelChoice:
    config: ModelConfig
    fallback_reason: str | None  # why the tiny model runs instead of the one asked for

    @property
    def banner(self) -> str:
        dtype = str(resolve_dtype(self.config.dtype, self.config.device)).removeprefix("torch.")
        bits = f", LLM in {self.config.quantize}" if self.config.quantize else ""
        live = f"Model **{self.config.name}** on **{self.config.device}** ({dtype}{bits})"
        if self.config.name != "tiny":
            return live
        real = ModelConfig.preset("7b", self.config.imagebind_path.parent.parent)
        reason = self.fallback_reason or f"Started with --model tiny; for real answers: {real.get_weights}"
        return f"{live}. ⚠️ Tiny random weights: answers are noise. {reason}"


def choose_model(args: argparse.Namespace) -> ModelChoice:
    """The asked-for model if its folder passes `check`, else the tiny one (written if missing).

    The fallback reason is `check`'s own explanation: what is missing or wrong, and the command
    that fixes it (`python -m pandagpt_demo.weights download ...`).
    """
    from pandagpt_demo.weights.check import check_model

    settings = dict(device=args.device, dtype=args.dtype, quantize=args.quantize, compile=args.compile)
    config = ModelConfig.preset(args.model, args.checkpoints, **settings)
    reason = None
    if args.model != "tiny":
        report = check_model(config, args.model)
        if not report.ok:
            reason = report.explanation()
            config = ModelConfig.preset("tiny", args.checkpoints, **settings)
    log.info(
        "model %s on %s, dtype %s, compile %s, quantize %s%s",
        config.name,
        config.device,
        config.dtype,
        config.compile,
        config.quantize,
        f" (fallback: {reason})" if reason else "",
    )
    return ModelChoice(config, reason)


def load_with_progress(choice: ModelChoice, on_step=lambda message: None) -> PandaGPT:
    """Load the chosen model, writing the tiny files first if needed; tqdm shows the steps."""
    config = choice.config
    with tqdm(total=LOAD_STEPS + 1, desc="Loading PandaGPT", unit="step") as bar:

        def step(message: str) -> None:
            bar.set_postfix_str(message)
            bar.update(1)
            on_step(message)

        if config.name == "tiny" and not config.delta_path.exists():
            step(f"writing tiny checkpoints to {config.imagebind_path.parent}")
            make_tiny(config.imagebind_path.parent)
        else:
            bar.update(1)
        return PandaGPT.load(config, progress=step)


class ModelHandle:
    """The model loading in a background thread, so the UI is up (with a status line) at once.

    Once loaded it holds the model and the engine that decodes for it (serving/start.py): the
    app's one place where the two are wired together.
    """

    def __init__(self, choice: ModelChoice, serving: ServingConfig = ServingConfig()) -> None:
        """With `serving.max_batch`, concurrent answers are decoded together (batching.py); None
        decodes each answer inside its own request (inline.py: ZeroGPU)."""
        self.choice = choice
        self.serving = serving
        self.status = "Starting…"
        self.error: str | None = None
        self._served: tuple[PandaGPT, Engine] | None = None
        self._done = threading.Event()

    def start(self) -> ModelHandle:
        threading.Thread(target=self._load, name="model-loader", daemon=True).start()
        return self

    def _load(self) -> None:
        try:
            model = load_with_progress(self.choice, self._on_step)
            engine = start_engine(model, self.serving, progress=self._on_step)
            self._served = (model, engine)
            EngineMonitor(engine).start()
            self.status = "Ready"
            log.info("ready: %s", self.choice.banner.replace("**", ""))
        except Exception as error:  # shown in the UI; the server stays up to say what is wrong
            log.exception("loading the model failed")
            self.error = f"{type(error).__name__}: {error}"
            self.status = f"Loading failed: {self.error}"
        finally:
            self._done.set()

    def _on_step(self, message: str) -> None:
        log.info("loading: %s", message)
        self.status = f"Loading: {message}"

    @property
    def ready(self) -> bool:
        return self._served is not None and self._served[1].ready

    def get(self, timeout: float | None = None) -> tuple[PandaGPT, Engine]:
        """The loaded model and its engine; raises `Unavailable` while loading (after `timeout`) or if loading failed."""
        self._done.wait(timeout)
        if self._served is None:
            raise Unavailable(self.error or f"The model is still loading ({self.status}).")
        return self._served

    def close(self) -> None:
        """Stop the engine: answers in flight end, new ones are refused."""
        if self._served is not None:
            self._served[1].close()
