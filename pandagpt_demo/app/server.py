"""The web app: flags, the optional download first, the model handle and the Gradio server (`python app.py --help`).

It serves until SIGTERM or SIGINT, then drains (public/lifecycle.py) and exits 0. Beside Gradio's routes
it answers `/healthz`, `/readyz` and `/metrics` (api/monitoring.py), the OpenAI-compatible `/v1`
(api/openai/), and `/chat` with its MCP tool at `/gradio_api/mcp/` (api/chat_tool.py); every upload
passes the disk budget first (public/uploads.py). The page is web/; what every endpoint shares,
answering/; Hugging Face Spaces' glue, space/.
"""

from __future__ import annotations

import argparse
import os
import sys

import gradio as gr
from gradio import utils as gradio_utils
from starlette.middleware import Middleware

from pandagpt_demo.app.answering.core import Answering
from pandagpt_demo.app.answering.metrics import Metrics
from pandagpt_demo.app.answering.settings import AnswerSettings
from pandagpt_demo.app.api.body_limit import BodyLimit, data_url_bytes
from pandagpt_demo.app.api.chat_tool import ChatTool
from pandagpt_demo.app.api.each_tool import EachTool
from pandagpt_demo.app.api.intake_tool import IntakeTool
from pandagpt_demo.app.api.monitoring import health_routes, metrics_route
from pandagpt_demo.app.api.openai.routes import ApiConfig, OpenAIApi
from pandagpt_demo.app.api.view_tool import ViewTool
from pandagpt_demo.app.public.fetcher import FetchPolicy, allow_networks
from pandagpt_demo.app.public.housekeeping import Housekeeping
from pandagpt_demo.app.public.lifecycle import exit_process
from pandagpt_demo.app.public.uploads import UploadBudget
from pandagpt_demo.app.space.environment import DOWNLOAD_ENV, SpaceEnv
from pandagpt_demo.app.space.fetch import WeightsFetch
from pandagpt_demo.app.space.zerogpu import GpuCalls, on_zero_gpu
from pandagpt_demo.app.web.page import PAGE_CSS, build_demo
from pandagpt_demo.config import AUTO_DEVICE, EXAMPLES_FILE, PublicLimits, ReplicaConfig, ServingConfig, ZeroGpuConfig
from pandagpt_demo.errors import BadSetting
from pandagpt_demo.serving.compile_cache import use_compile_cache
from pandagpt_demo.weights.download import Request

from .runtime import MainThreadLoads, ModelHandle, add_model_arguments, choose_model, cpu_precision, local_device, model_config, setup_logging


def parse_args(argv: list[str] | None = None, space: SpaceEnv | None = None) -> argparse.Namespace:
    """The flags; on a Space (`space`) the checkpoints folder defaults to its persistent storage."""
    space = space or SpaceEnv.read()
    parser = argparse.ArgumentParser(description="Chat with PandaGPT about images, sounds, videos, thermal and depth images and IMU recordings.")
    add_model_arguments(parser)
    parser.set_defaults(checkpoints=space.checkpoints(), compile_cache=space.compile_cache())
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
    add_public_arguments(parser)
    add_api_arguments(parser)
    add_replica_arguments(parser)
    add_zero_gpu_arguments(parser)
    parser.add_argument(
        "--download",
        action="store_true",
        help=(
            "fetch the --model weights into --checkpoints (as `python -m pandagpt_demo.weights download`) while the tiny model "
            f"serves, then swap them in; the default on a Space with a GPU (${DOWNLOAD_ENV}=7b|13b|no overrides)"
        ),
    )
    args = parser.parse_args(argv)
    try:  # a bad entry stops the start, naming the flag and the entry
        allow_networks(args.remote_media_allow)
    except BadSetting as error:
        parser.error(str(error))
    args.remote_media_allow = tuple(args.remote_media_allow)
    if not args.remote_timeout > 0:
        parser.error(f"--remote-timeout must be a positive number of seconds, not {args.remote_timeout:g}")
    return args


def add_zero_gpu_arguments(parser: argparse.ArgumentParser) -> None:
    """What each ZeroGPU call asks for (space/zerogpu.py); defaults from ZeroGpuConfig."""
    group = parser.add_argument_group("ZeroGPU Spaces")
    group.add_argument("--zerogpu-max-s", type=int, default=ZeroGpuConfig.max_s, help="the most seconds one answer asks ZeroGPU for")
    group.add_argument(
        "--zerogpu-margin-s", type=float, default=ZeroGpuConfig.margin_s, help="an answer stops this long before its ZeroGPU time runs out"
    )


def add_public_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags an operator of a public link sets (README, 'Running a public link'); defaults from PublicLimits."""
    limits = PublicLimits()
    group = parser.add_argument_group("running a public link")
    group.add_argument(
        "--max-sessions", type=int, default=limits.max_sessions, help="tabs chatting at once; the next visitor is asked to come back later"
    )
    group.add_argument(
        "--session-ttl", type=float, default=limits.session_ttl, help="seconds a chat may stay idle before it is cleared and its files deleted"
    )
    group.add_argument(
        "--max-upload-disk-gb", type=float, default=limits.max_upload_disk_gb, help="disk budget of the upload folder; unused files go first past it"
    )
    group.add_argument(
        "--upload-grace", type=float, default=limits.upload_grace, help="seconds an upload not yet asked about is kept while there is room"
    )
    group.add_argument(
        "--stall-timeout", type=float, default=ServingConfig.stall_timeout, help="seconds an answer may wait for its next token; 0: no limit"
    )
    group.add_argument("--answer-timeout", type=float, default=ServingConfig.answer_timeout, help="seconds one answer may take in all; 0: no limit")
    group.add_argument("--drain-seconds", type=float, default=limits.drain_seconds, help="on SIGTERM/SIGINT: time answers in flight get to finish")


def add_api_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of the APIs beside the page (README, "APIs"); defaults from ApiConfig."""
    group = parser.add_argument_group("APIs: OpenAI-compatible /v1, MCP, /metrics")
    group.add_argument(
        "--api-key", default=os.environ.get("PANDAGPT_API_KEY"), help="require this Bearer token on /v1 (default: $PANDAGPT_API_KEY; none: open)"
    )
    group.add_argument("--allow-remote-media", action="store_true", help="let /v1 fetch http(s) media URLs (off: data URLs only)")
    group.add_argument(
        "--remote-media-allow",
        action="append",
        default=[],
        metavar="IP_OR_CIDR",
        help=(
            "an address or network (127.0.0.1, 10.0.0.0/8) that media URLs (/v1's, /chat's and MCP's) may be fetched from although "
            "not public; repeatable (default: public addresses only)"
        ),
    )
    group.add_argument(
        "--remote-timeout", type=float, default=FetchPolicy.timeout, help="seconds fetching one remote file may take in all (/v1, /chat, MCP)"
    )
    group.add_argument(
        "--max-request-mb",
        type=float,
        default=ApiConfig.max_request_bytes / 2**20,
        help="largest /v1 body; its media go to disk as they arrive (under the upload budget), so memory stays small whatever it is",
    )
    group.add_argument("--no-mcp", dest="mcp", action="store_false", help="do not serve the MCP tool at /gradio_api/mcp/")


def add_replica_arguments(parser: argparse.ArgumentParser) -> None:
    """Past one GPU (README, "Several GPUs and machines"): without these flags, one process and no Ray."""
    group = parser.add_argument_group("model replicas on Ray Serve (pip install 'ray[serve]')")
    group.add_argument("--replicas", type=int, help="start a local Ray cluster and this many model replicas (one per GPU)")
    group.add_argument("--ray-address", help="join this running Ray cluster instead ('auto' on a node of it, or ray://HOST:10001)")
    group.add_argument("--min-replicas", type=int, help="with --max-replicas: autoscale the replicas from their load")
    group.add_argument("--max-replicas", type=int)


def replica_config(args: argparse.Namespace) -> ReplicaConfig | None:
    """The replicas asked for, or None (the model in this process)."""
    if args.replicas is None and args.ray_address is None and args.min_replicas is None and args.max_replicas is None:
        return None
    if on_zero_gpu():
        sys.exit("--replicas and --ray-address cannot run on a ZeroGPU Space: its GPU exists only inside each request.")
    return ReplicaConfig(
        replicas=args.replicas or ReplicaConfig.replicas,
        ray_address=args.ray_address,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
    )


def public_limits(args: argparse.Namespace) -> PublicLimits:
    return PublicLimits(
        max_sessions=args.max_sessions,
        session_ttl=args.session_ttl,
        max_upload_disk_gb=args.max_upload_disk_gb,
        upload_grace=args.upload_grace,
        drain_seconds=args.drain_seconds,
    )


def download_first(args: argparse.Namespace) -> None:
    """With replicas (which load from files): the weights command's download for --model, before starting; exits if it fails."""
    from pandagpt_demo.weights.cli import run_download

    if run_download(Request(model=args.model, directory=args.checkpoints)) != 0:
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    space = SpaceEnv.read()
    args = parse_args(argv, space)
    setup_logging(args.log_level)
    use_compile_cache(args.compile_cache)
    replicas = replica_config(args)
    # replicas run where the Ray cluster puts them: their device is decided once it is joined
    args.device = (args.device or AUTO_DEVICE) if replicas is not None else local_device(args.device)
    size = space.to_fetch(args.model, args.download)
    if size is not None:
        args.model = size
    if size is not None and replicas is not None:
        download_first(args)
    choice = choose_model(args)
    fetch = size is not None and replicas is None and choice.fallback_reason is not None  # not there yet: fetched while tiny serves
    print(choice.banner.replace("**", ""))
    zero_gpu = on_zero_gpu()
    serving = ServingConfig(
        max_batch=None if zero_gpu else args.concurrency,  # ZeroGPU: no GPU outside a GPU call
        max_waiting=args.queue_size,
        stall_timeout=args.stall_timeout or None,
        answer_timeout=args.answer_timeout or None,
    )
    limits = public_limits(args)
    house = Housekeeping(limits, gradio_utils.get_upload_folder())
    loads = MainThreadLoads() if zero_gpu else None  # ZeroGPU: "cuda" only on the thread that imported `spaces`
    # Before the model loads in the background: the estimate builds ImageBind's shapes under accelerate's
    # init_empty_weights, which patches torch for every thread while it runs.
    fetched = cpu_precision(args, model_config(args, size)) if fetch else None
    handle = ModelHandle(choice, serving, replicas, loads).start()
    if fetched is not None:
        WeightsFetch(handle, Request(model=size, directory=args.checkpoints), *fetched).start()
    house.lifecycle.install_signal_handlers()  # after Ray's start, which sets handlers of its own
    metrics = Metrics(handle, house)
    max_file_size = int(args.max_file_mb * 1024 * 1024)  # bytes; Gradio refuses larger uploads unread
    # every media URL (/v1's, /chat's, the MCP tool's) fetched under one policy
    settings = AnswerSettings(remote=FetchPolicy(timeout=args.remote_timeout, max_bytes=max_file_size, allow=args.remote_media_allow))
    # ZeroGPU: each answer a GPU call, its function decorated now, before launch
    in_gpu_call = GpuCalls(ZeroGpuConfig(max_s=args.zerogpu_max_s, margin_s=args.zerogpu_margin_s), handle, metrics).model if zero_gpu else None
    core = Answering(handle, house, metrics, settings, in_gpu_call)
    demo = build_demo(core)
    with demo:
        gr.api(ChatTool(core).ask_pandagpt, api_name="chat", api_description=ChatTool.description())
        gr.api(ViewTool(core).imagebind_view, api_name="imagebind_view", api_description=ViewTool.description())
        gr.api(IntakeTool(core).imagebind_intake, api_name="imagebind_intake", api_description=IntakeTool.description())
        each = EachTool(core)
        gr.api(each.answer_each, api_name="answer_each", api_description=EachTool.description())
        gr.api(each.answer_blend, api_name="answer_blend", api_description=EachTool.blend_description())
    demo.queue(default_concurrency_limit=args.concurrency, max_size=args.queue_size)
    api = OpenAIApi(
        core,
        ApiConfig(
            api_key=args.api_key or None,
            allow_remote_media=args.allow_remote_media,
            max_file_bytes=max_file_size,
            max_request_bytes=int(args.max_request_mb * 2**20),
        ),
    )
    house.start()
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        max_file_size=max_file_size,
        allowed_paths=[str(EXAMPLES_FILE.parent)],
        show_error=True,
        css=PAGE_CSS,
        prevent_thread_lock=True,
        mcp_server=args.mcp,
        state_session_capacity=max(10_000, 2 * limits.max_sessions),  # Gradio's own silent eviction stays far beyond our cap
        app_kwargs={
            "routes": [*health_routes(handle, house.lifecycle), metrics_route(metrics), *api.routes()],
            "middleware": [
                Middleware(UploadBudget, store=house.uploads, limit=max_file_size),
                Middleware(BodyLimit, limit=data_url_bytes(max_file_size)),
            ],
        },
    )
    house.lifecycle.wait_for_stop(loads.run_for if loads is not None else None)
    house.lifecycle.drain(handle.close)
    house.stop()
    demo.close()
    exit_process()
