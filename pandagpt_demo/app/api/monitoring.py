"""`GET /healthz`, `GET /readyz` and `GET /metrics`, on the app's own port, for load balancers, Spaces,
Ray, Kubernetes and Prometheus.

`/healthz` says the process answers (always 200). `/readyz` says whether a question sent now would
be answered: the model loaded, the engine running, not draining, the engine's queue not full;
200 when ready, 503 with the reasons when not.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pandagpt_demo.app.answering.metrics import Metrics
from pandagpt_demo.app.public.lifecycle import Lifecycle
from pandagpt_demo.app.runtime import ModelHandle


def readiness(handle: ModelHandle, lifecycle: Lifecycle) -> dict:
    """The /readyz document: `ready`, the reasons it is not, and the engine's load."""
    reasons = []
    stats = handle.stats()
    if handle.error is not None:
        reasons.append(f"loading failed: {handle.error}")
    elif stats is None:
        reasons.append(handle.status)
    elif not handle.ready:
        reasons.append("the engine is not running")
    if lifecycle.draining.is_set():
        reasons.append("draining: shutting down")
    if stats is not None and stats.waiting >= handle.serving.max_waiting:
        reasons.append(f"queue full: {stats.waiting} waiting")
    replicas = handle.replica_status()
    if replicas is not None and replicas.ready == 0:
        reasons.append(f"no model replica is ready (0 of {replicas.total})")
    document = {
        "ready": not reasons,
        "reasons": reasons,
        "model": handle.choice.config.name,
        "banner": handle.choice.banner.replace("**", ""),  # what the page says of the model (a fallback's reason)
        "notice": handle.notice,  # a weights fetch's progress, while one runs
        "in_flight": lifecycle.in_flight,
    }
    if replicas is not None:
        document["replicas"] = {"ready": replicas.ready, "total": replicas.total, "answers": handle.served_by()}
    if stats is not None:
        document["engine"] = {"waiting": stats.waiting, "active": stats.active, "tokens": stats.tokens, "steps": stats.steps}
    return document


def health_routes(handle: ModelHandle, lifecycle: Lifecycle) -> list[Route]:
    """The two routes, for the app's FastAPI constructor (Gradio's `app_kwargs`), ahead of Gradio's own."""
    started = time.monotonic()

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"alive": True, "uptime_s": round(time.monotonic() - started, 1), "status": handle.status})

    async def readyz(request: Request) -> JSONResponse:
        document = readiness(handle, lifecycle)
        return JSONResponse(document, status_code=200 if document["ready"] else 503)

    return [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]


def metrics_route(metrics: Metrics) -> Route:
    """`/metrics`: the app's counters, histograms and scrape-time gauges in Prometheus' text format."""

    async def scrape(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return Route("/metrics", scrape, methods=["GET"])
