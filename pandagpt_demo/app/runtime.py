"""Choosing and loading the model for the app and the terminal chat: flags, tiny fallback, progress.

With no real checkpoints the demo still starts, on the tiny random model, and says so (with the
way to get the real files) wherever the model is named.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
from tqdm import tqdm

from pandagpt_demo.config import LLAMA_SHAPES, MODEL_SIZES, QUANTIZE_CHOICES, ModelConfig, ReplicaConfig, ServingConfig
from pandagpt_demo.errors import Unavailable
from pandagpt_demo.model.footprint import Precision
from pandagpt_demo.model.pandagpt import PandaGPT, run_dtype
from pandagpt_demo.serving.engine import Engine, EngineStats
from pandagpt_demo.serving.monitor import EngineMonitor
from pandagpt_demo.serving.remote import ReplicaStatus
from pandagpt_demo.serving.start import start_engine
from pandagpt_demo.weights.synthetic import make_tiny

log = logging.getLogger(__name__)
T = TypeVar("T")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
QUANTIZE_ENV = "PANDAGPT_QUANTIZE"


def setup_logging(level: str) -> None:
    """The standard `logging` to stderr: start-up, engine load, internal errors with tracebacks, requests at DEBUG."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("httpx", "httpcore"):  # Gradio's own HTTP calls, one line each: only their problems
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLevelName(level)))


LOAD_STEPS = 5  # the progress messages PandaGPT.load sends


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", default="INFO", choices=LOG_LEVELS, help="DEBUG also logs each request's life (default INFO)")
    parser.add_argument("--checkpoints", type=Path, default=Path("checkpoints"), help="folder of the released files (default: checkpoints/)")
    parser.add_argument("--model", choices=MODEL_SIZES, default="7b", help="model size (default 7b; tiny = random test weights)")
    parser.add_argument("--device", help="torch device (default: cuda if this machine has a GPU; with replicas, cuda if the Ray cluster has GPUs)")
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "float16", "bfloat16"), help="auto: float16 on CUDA, float32 on CPU")
    quantize = os.environ.get(QUANTIZE_ENV) or "auto"  # a Space runs app.py without flags: its variables stand in
    if quantize not in QUANTIZE_CHOICES:
        raise SystemExit(f"${QUANTIZE_ENV} is '{quantize}': it takes {', '.join(QUANTIZE_CHOICES)}.")
    parser.add_argument(
        "--quantize",
        choices=QUANTIZE_CHOICES,
        default=quantize,
        help=(
            "the LLM's linear layers in 8 or 4 bits (PyTorch's kernels on the CPU, bitsandbytes on a GPU), or none; "
            f"auto (default, or ${QUANTIZE_ENV}): on the CPU the largest precision that fits the memory, "
            "float32 > bfloat16 > 8bit > 4bit; elsewhere none"
        ),
    )
    parser.add_argument(
        "--memory-gb",
        type=float,
        help="on the CPU, the memory the app may count on when it chooses the precision (default: what this machine or container has available)",
    )
    parser.add_argument(
        "--no-compile", dest="compile", action="store_false", help="on CUDA, skip compiling the decode steps: ready minutes sooner, decodes slower"
    )
    parser.add_argument(
        "--compile-cache",
        type=Path,
        help="folder that keeps compiled decode steps between starts (default: a Space's persistent storage; else the compilers' own)",
    )


@dataclass(frozen=True)
class ModelChoice:
    config: ModelConfig
    fallback_reason: str | None  # why the tiny model runs instead of the one asked for
    precision_reason: str | None = None  # why this precision, when chosen from the machine's memory

    @property
    def banner(self) -> str:
        dtype = str(run_dtype(self.config.run)).removeprefix("torch.")
        bits = f", LLM in {self.config.run.quantize}" if self.config.run.quantize else ""
        chosen = ", chosen from this machine's memory" if self.precision_reason else ""
        live = f"Model **{self.config.name}** on **{self.config.run.device}** ({dtype}{bits}{chosen})"
        if self.config.name != "tiny":
            return live
        real = ModelConfig.preset("7b", self.config.files.imagebind_path.parent.parent)
        reason = self.fallback_reason or f"Started with --model tiny; for real answers: {real.files.get_weights}"
        return f"{live}. ⚠️ Tiny random weights: answers are noise. {reason}"


def choose_model(args: argparse.Namespace) -> ModelChoice:
    """The asked-for model if its folder passes `check`, else the tiny one (written if missing).

    The fallback reason is `check`'s own explanation: what is missing or wrong, and the command
    that fixes it (`python -m pandagpt_demo.weights download ...`).
    """
    from pandagpt_demo.weights.check import check_model

    config, precision_reason = model_config(args, args.model), None
    reason = None
    if args.model != "tiny":
        report = check_model(config, args.model)
        if not report.ok:
            reason = report.explanation()
            config = model_config(args, "tiny")
    if config.name != "tiny":
        config, precision_reason = cpu_precision(args, config)
    log.info(
        "model %s on %s, dtype %s, compile %s, quantize %s%s%s",
        config.name,
        config.run.device,
        config.run.dtype,
        config.run.compile,
        config.run.quantize,
        f" (precision from memory: {precision_reason})" if precision_reason else "",
        f" (fallback: {reason})" if reason else "",
    )
    return ModelChoice(config, reason, precision_reason)


def cpu_precision(args: argparse.Namespace, config: ModelConfig) -> tuple[ModelConfig, str | None]:
    """On the CPU, `config` at the precision chosen from the memory available (with `--quantize auto`
    and `--dtype auto`), or as asked if that can load; DoesNotFit (a SystemExit) otherwise.
    Elsewhere, or where the memory cannot be read, `config` as it is."""
    from .precision import available_memory, choose, needs_of, require

    available = int(args.memory_gb * 1e9) if args.memory_gb else available_memory()
    if config.run.device.split(":")[0] != "cpu" or available is None:
        return config, None
    shape = LLAMA_SHAPES[config.name]
    needs = needs_of(shape, config.spec.imagebind, getattr(args, "concurrency", None) or 1)
    if args.quantize == "auto" and args.dtype == "auto":
        precision, reason = choose(needs, available)
        if precision.quantize is None and precision.dtype != "float32":
            reason += "; decoding is faster in fewer bits: --quantize 4bit (README, 'On a CPU')"
        return config.updated(dtype=precision.dtype, quantize=precision.quantize), reason
    dtype = str(run_dtype(config.run)).removeprefix("torch.")
    require(needs, Precision(dtype, config.run.quantize), available)
    return config, None


def local_device(asked: str | None) -> str:
    """The device asked for, or this machine's GPU if it has one."""
    return asked or ("cuda" if torch.cuda.is_available() else "cpu")


def model_config(args: argparse.Namespace, size: str) -> ModelConfig:
    """The config of model `size` in --checkpoints with the run settings the flags ask for."""
    quantize = None if args.quantize in ("auto", "none") else args.quantize  # auto: decided by cpu_precision, once the model is known
    return ModelConfig.preset(size, args.checkpoints, device=args.device, dtype=args.dtype, quantize=quantize, compile=args.compile)


def load_with_progress(choice: ModelChoice, on_step=lambda message: None, on_detail=lambda message: None) -> PandaGPT:
    """Load the chosen model, writing the tiny files first if needed; tqdm shows the steps, and
    `on_detail` hears the progress within one (quantizing) without a step passing."""
    config = choice.config
    with tqdm(total=LOAD_STEPS + 1, desc="Loading PandaGPT", unit="step") as bar:

        def step(message: str) -> None:
            bar.set_postfix_str(message)
            bar.update(1)
            on_step(message)

        def detail(message: str) -> None:
            bar.set_postfix_str(message)
            on_detail(message)

        if not write_tiny_if_missing(config, step):
            bar.update(1)
        return PandaGPT.load(config, progress=step, detail=detail)


def write_tiny_if_missing(config: ModelConfig, step: Callable[[str], None]) -> bool:
    """The tiny model's files, written first if it is the one chosen and they are missing; whether they were."""
    if config.name != "tiny" or config.files.delta_path.exists():
        return False
    step(f"writing tiny checkpoints to {config.files.imagebind_path.parent}")
    make_tiny(config.files.imagebind_path.parent)
    return True


class MainThreadLoads:
    """Model loads handed to the main thread, which runs them while it waits for a signal (server.main).

    On ZeroGPU it is the thread that imported `spaces` (app.py), the only one where a model can be put
    on "cuda" outside a GPU call: `spaces`' torch modes are thread-local, and elsewhere CUDA's
    initialisation is one that raises (app/space/zerogpu.py)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], object], Future]] = queue.SimpleQueue()

    def submit(self, job: Callable[[], T]) -> Future[T]:
        """`job` to be run by the main thread (from another thread); its result or error in the future."""
        future: Future[T] = Future()
        self._jobs.put((job, future))
        return future

    def run_for(self, seconds: float) -> None:
        """(On the main thread.) Run the next job handed in within `seconds`, if one is."""
        try:
            job, future = self._jobs.get(timeout=seconds)
        except queue.Empty:
            return
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(job())
            except Exception as error:  # noqa: BLE001 - the submitter raises it
                future.set_exception(error)


class ModelHandle:
    """The model loading in the background (its own thread, or the main thread's loads), so the UI is
    up (with a status line) at once.

    Once loaded it holds the model and the engine that decodes for it (serving/start.py): the
    app's one place where the two are wired together. `replace` swaps in another model while the
    server runs (the real weights, once fetched): answers already started finish on the old one.
    """

    def __init__(
        self,
        choice: ModelChoice,
        serving: ServingConfig = ServingConfig(),
        replicas: ReplicaConfig | None = None,
        loads: MainThreadLoads | None = None,
    ) -> None:
        """With `serving.max_batch`, concurrent answers are decoded together (batching.py); None
        decodes each answer inside its own request (inline.py: ZeroGPU). With `replicas`, the model
        runs in replicas on Ray Serve (serving/replicas.py) and this process keeps only prompts.
        With `loads` (ZeroGPU), every model is loaded by the main thread, handed over through it."""
        self.choice = choice
        self.serving = serving
        self.replicas = replicas
        self.loads = loads
        self.status = "Starting…"
        self.notice = ""  # a line under the banner: a weights fetch's progress or outcome (space/fetch.py)
        self.upgrading = False  # a fetch or a swap is under way: the page keeps polling the status
        self.generation = 0  # counts the models served so far: 1 once loaded, +1 for each one swapped in
        self.error: str | None = None
        self._served: tuple[PandaGPT, Engine] | None = None
        self._cluster = None  # serving.replicas.Cluster, with `replicas`
        self._done = threading.Event()

    def start(self) -> ModelHandle:
        """Load in the background; with replicas, first connect to Ray here, in the caller's (lasting) thread."""
        if self.replicas is not None:
            from pandagpt_demo.serving.replicas import Cluster  # Ray is imported only for replicas

            self._cluster = Cluster(self.choice.config, self.serving, self.replicas).connect()
            self.choice = ModelChoice(self._cluster.config, self.choice.fallback_reason)  # the device the cluster has
        if self.loads is not None:
            self.loads.submit(self._load)
        else:
            threading.Thread(target=self._load, name="model-loader", daemon=True).start()
        return self

    def _load(self) -> None:
        try:
            if self.replicas is None:
                served = self._load_here(self.choice)
            else:
                write_tiny_if_missing(self.choice.config, self._on_step)
                served = self._cluster.start(self._on_step)
            self._serve(served, self.choice)
        except Exception as error:  # shown in the UI; the server stays up to say what is wrong
            log.exception("loading the model failed")
            self.error = f"{type(error).__name__}: {error}"
            self.status = f"Loading failed: {self.error}"
        finally:
            self._done.set()

    def _on_step(self, message: str) -> None:
        log.info("loading: %s", message)
        self.status = f"Loading: {message}"

    def _on_detail(self, message: str) -> None:
        """Progress within a step (quantizing: a percentage), on the status line only: not a log line each."""
        self.status = f"Loading: {message}"

    def replace(self, choice: ModelChoice, drain_s: float = 120.0) -> None:
        """Load `choice` (in the caller's thread, or with `loads` on the main thread, waiting for it)
        and serve it from now on; the old engine is closed once its answers in flight are done (or
        after `drain_s`). Raises if loading fails, the old model still serving."""
        if self.replicas is not None:
            raise RuntimeError("replacing the model is not supported with replicas")
        self._done.wait()  # the first model's load ends first, so it cannot land after this one
        old = self._served
        served = self.loads.submit(lambda: self._load_here(choice)).result() if self.loads is not None else self._load_here(choice)
        self._serve(served, choice)
        if old is not None:
            _close_when_idle(old[1], drain_s)

    def _load_here(self, choice: ModelChoice) -> tuple[PandaGPT, Engine]:
        """`choice` loaded in this process, with its engine started."""
        model = load_with_progress(choice, self._on_step, self._on_detail)
        return model, start_engine(model, self.serving, progress=self._on_step)

    def _serve(self, served: tuple[PandaGPT, Engine], choice: ModelChoice) -> None:
        """Answer with `served` from now on (the next model's generation), its load watched in the log."""
        self._served, self.choice = served, choice
        self.generation += 1
        EngineMonitor(served[1]).start()
        self.status = "Ready"
        log.info("ready: %s", choice.banner.replace("**", ""))

    def fall_back(self, reason: str) -> None:
        """Keep the model serving now, with `reason` as what its banner says (a fetch that failed)."""
        self.choice = ModelChoice(self.choice.config, reason)

    @property
    def ready(self) -> bool:
        return self._served is not None and self._served[1].ready

    @property
    def changing(self) -> bool:
        """Whether the status line may still change by itself (loading, fetching, swapping)."""
        return (self._served is None and self.error is None) or self.upgrading

    def stats(self) -> EngineStats | None:
        """The engine's load, once loaded."""
        return self._served[1].stats() if self._served is not None else None

    def replica_status(self) -> ReplicaStatus | None:
        """Replicas ready of those wanted, when the model runs in replicas (and they are deployed)."""
        return self._cluster.status() if self._cluster is not None and self._served is not None else None

    def served_by(self) -> dict[str, int]:
        """Answers each replica started, by replica id (empty without replicas)."""
        engine = self._served[1] if self._served is not None else None
        return dict(getattr(engine, "served", {}))

    def get(self, timeout: float | None = None) -> tuple[PandaGPT, Engine]:
        """The loaded model and its engine; raises `Unavailable` while loading (after `timeout`) or if loading failed."""
        self._done.wait(timeout)
        if self._served is None:
            raise Unavailable(self.error or f"The model is still loading ({self.status}).")
        return self._served

    def close(self) -> None:
        """Stop the engine: answers in flight end, new ones are refused; replicas (and a Ray cluster started here) go."""
        if self._served is not None:
            self._served[1].close()
        if self._cluster is not None:
            self._cluster.shutdown()


def _close_when_idle(engine: Engine, drain_s: float) -> None:
    """Close `engine` once nothing waits or decodes on it (or after `drain_s`), in the caller's thread."""
    deadline = time.monotonic() + drain_s
    while time.monotonic() < deadline:
        stats = engine.stats()
        if stats.active == 0 and stats.waiting == 0:
            break
        time.sleep(0.2)
    engine.close()
