"""Model replicas on Ray Serve: past one GPU, behind the same page and APIs.

Each replica (`Replica`, one Serve deployment) loads the model set once and runs the in-process
batching engine on its own GPU; Serve routes each request to a lightly loaded replica, checks
their health, restarts one whose process dies and, with a min and a max, scales their number from
load. The front end (the page, `/chat`, `/v1`) keeps the sessions and reaches the replicas only
through `RemoteModel` and `RemoteEngine` (remote.py): files are preprocessed at the front end and
projected on a replica; prompts are built at the front end and decoded on a replica, their token
ids streamed back. Only this module imports Ray, and only the app's `--replicas`/`--ray-address`
flags import it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

import ray
import torch
from ray import serve
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError

from pandagpt_demo.config import AUTO_DEVICE, ModelConfig, ReplicaConfig, SamplingParams, ServingConfig
from pandagpt_demo.errors import Busy, PandaGPTError
from pandagpt_demo.model.memory import fits_on_gpu
from pandagpt_demo.model.modalities import Modality
from pandagpt_demo.model.pandagpt import PandaGPT

from .remote import RemoteEngine, RemoteModel, ReplicaStatus
from .start import start_engine

log = logging.getLogger(__name__)
APP = "pandagpt"  # the Serve application's name
DEPLOYMENT = "Replica"


@serve.deployment(name=DEPLOYMENT, health_check_period_s=5, health_check_timeout_s=30)
class Replica:
    """One copy of the model and its batching engine, in its own process (on its own GPU)."""

    def __init__(self, config: ModelConfig, serving: ServingConfig) -> None:
        self.model = PandaGPT.load(config)
        self.engine = start_engine(self.model, serving)
        self.id = f"{ray.util.get_node_ip_address()}:{os.getpid()}"
        log.info("replica %s ready: %s on %s", self.id, config.name, config.run.device)

    def describe(self) -> dict:
        """What the front end needs to build prompts as this replica would."""
        embedding = self.model.llm.get_input_embeddings().weight.detach().to("cpu", self.model.dtype)
        return {"tokenizer": self.model.tokenizer, "embedding": embedding, "replica": self.id}

    def encode(self, modality: str, data: torch.Tensor) -> torch.Tensor:
        kind = Modality(modality)
        with fits_on_gpu(f"your {kind.value} file"):
            return self.model.encode(kind, data).cpu()

    def project_each(self, vectors: list[torch.Tensor]) -> list[torch.Tensor]:
        return [projected.cpu() for projected in self.model.project_each(vectors)]

    def embed_labels(self, labels: list[str]) -> torch.Tensor:
        return self.model.embed_labels(labels).cpu()

    def imagebind_outputs(self, inputs: list[tuple[str, torch.Tensor]]) -> torch.Tensor:
        return self.model.imagebind_outputs([(Modality(kind), vector) for kind, vector in inputs]).cpu()

    async def generate(self, embeds: torch.Tensor, params: SamplingParams) -> AsyncIterator[object]:
        """`{"replica": id}`, then the answer's token ids as this replica's engine decodes them."""
        yield {"replica": self.id}
        cancel = threading.Event()
        tokens = self.engine.generate(embeds.to(self.model.device, self.model.dtype), params, cancel)
        try:
            while (token := await asyncio.to_thread(next, tokens, None)) is not None:
                yield token
        finally:
            cancel.set()  # the answer ended, or its caller went away: the row leaves the batch

    def check_health(self) -> None:
        if not self.engine.ready:
            raise RuntimeError("the replica's engine is not running")


class _Stream:
    """A replica's token stream as the front end iterates it, with Ray's errors as ours."""

    def __init__(self, response) -> None:
        self.response = response

    def __iter__(self) -> Iterator[object]:
        try:
            yield from self.response
        except BackPressureError as error:
            raise Busy("Every model replica is busy; please try again in a moment.") from error
        except RayTaskError as error:
            raise _cause(error) from None

    def cancel(self) -> None:
        self.response.cancel()


def _cause(error: RayTaskError) -> BaseException:
    """A replica's own error (a full queue, a timeout, a bad file) as it was raised there."""
    cause = getattr(error, "cause", None)
    return cause if isinstance(cause, PandaGPTError) else error


class Cluster:
    """The Ray cluster (started here, or joined) and the replicas' Serve application."""

    def __init__(self, config: ModelConfig, serving: ServingConfig, replicas: ReplicaConfig) -> None:
        self.config = config
        self.serving = serving
        self.replicas = replicas
        self._started_ray = False
        self._status = (0.0, ReplicaStatus(0, replicas.replicas))

    def connect(self) -> Cluster:
        """Start (or join) the Ray cluster. Call it from a thread that lives as long as the app (the
        main one): Ray's local processes die with the thread that started them (Linux's parent-death signal)."""
        if not ray.is_initialized():
            where = f"joining the Ray cluster at {self.replicas.ray_address}" if self.replicas.ray_address else "starting a local Ray cluster"
            log.info("%s", where)
            ray.init(address=self.replicas.ray_address, include_dashboard=False, log_to_driver=False, configure_logging=False)
            self._started_ray = self.replicas.ray_address is None
            ray.put(None)  # Ray's serializers import pydantic on first use: here, not racing the loader thread's imports
        if self.config.run.device == AUTO_DEVICE:  # the cluster's GPUs, not this front end's, decide
            self.config = self.config.updated(device="cuda" if ray.cluster_resources().get("GPU", 0) >= 1 else "cpu")
            log.info("replicas on %s (the cluster's resources: %s)", self.config.run.device, ray.cluster_resources())
        return self

    def start(self, progress: Callable[[str], None] = lambda step: None) -> tuple[RemoteModel, RemoteEngine]:
        """Deploy the replicas on the connected cluster and wait until they are loaded."""
        serve.start(proxy_location="Disabled")  # the front end is the app's own server
        progress(f"starting {self._wanted()} on Ray Serve")
        handle = serve.run(self._deployment().bind(self.config, self.serving), name=APP, route_prefix=None)
        info = handle.describe.remote().result(timeout_s=self.replicas.start_timeout)
        self.handle = handle

        def call(method: str) -> Callable:
            """A replica's `method`, called through the router; its user errors raised here as they are."""

            def remote(*args: object) -> object:
                try:
                    return getattr(handle, method).remote(*args).result()
                except RayTaskError as error:
                    raise _cause(error) from None

            return remote

        encode = call("encode")
        model = RemoteModel(
            self.config,
            info["tokenizer"],
            info["embedding"],
            lambda modality, data: encode(modality.value, data),
            call("project_each"),
            call("embed_labels"),
            lambda inputs: call("imagebind_outputs")([(modality.value, vector) for modality, vector in inputs]),
        )
        engine = RemoteEngine(self._open, self.status, lost=RayActorError)
        log.info("replicas ready: %s", self.status())
        return model, engine

    def _wanted(self) -> str:
        r = self.replicas
        return f"{r.min_replicas or 1} to {r.max_replicas or r.min_replicas} replicas" if r.autoscaling else f"{r.replicas} replica(s)"

    def _deployment(self):
        serving, r = self.serving, self.replicas
        gpu = self.config.run.device.startswith("cuda")
        options = {
            # each replica takes one GPU; on a CPU machine (tests, benchmarks) they share the cores
            "ray_actor_options": {"num_gpus": 1, "num_cpus": 1} if gpu else {"num_cpus": 0},
            "max_ongoing_requests": (serving.max_batch or 1) + serving.max_waiting,
            "max_queued_requests": serving.max_waiting,  # beyond: BackPressureError, our Busy
        }
        if r.autoscaling:
            low = r.min_replicas or 1
            options["autoscaling_config"] = {
                "min_replicas": low,
                "max_replicas": max(r.max_replicas or low, low),
                "target_ongoing_requests": serving.max_batch or 1,  # a replica is busy when its batch is full
            }
        else:
            options["num_replicas"] = r.replicas
        return Replica.options(**options)

    def _open(self, embeds: torch.Tensor, params: SamplingParams) -> _Stream:
        return _Stream(self.handle.options(stream=True).generate.remote(embeds, params))

    def status(self) -> ReplicaStatus:
        """Replicas running of those wanted (asked of Serve at most once a second)."""
        asked, status = self._status
        if time.monotonic() - asked > 1.0:
            try:
                deployment = serve.status().applications[APP].deployments[DEPLOYMENT]
                states = deployment.replica_states
                wanted = (self.replicas.min_replicas or 1) if self.replicas.autoscaling else self.replicas.replicas
                status = ReplicaStatus(states.get("RUNNING", 0), max(wanted, sum(states.values())))
            except Exception:  # noqa: BLE001 - a status we cannot read is no replica ready
                log.warning("could not read the replicas' status", exc_info=True)
                status = ReplicaStatus(0, status.total)
            self._status = (time.monotonic(), status)
        return status

    def shutdown(self) -> None:
        """Remove the replicas; stop the Ray cluster if it was started here (leave a joined one running)."""
        try:
            serve.delete(APP)
            if self._started_ray:
                serve.shutdown()
        finally:
            ray.shutdown()
