"""Benchmark loading: time and peak host memory of `PandaGPT.load`, against the loader it replaced.

    python benchmarks/bench_load.py --size 7b                    # random 7B weights into a temporary folder, loaded on the CPU in bfloat16
    python benchmarks/bench_load.py --size 7b --dir /data/r7b    # writes DIR once (make-random), reuses it after
    python benchmarks/bench_load.py --size 7b --device cuda      # float16 on the GPU: the host memory the weights pass through

Random weights in the released formats, written by the project's own `python -m pandagpt_demo.weights
make-random` (`make-tiny` for tiny). Each load runs in a fresh process, so the kernel's high-water mark
of its resident memory (`ru_maxrss`, from wait4) is the load's own; this process also samples the
child's RssAnon and RssFile (pages of mapped files count as resident while mapped). The set's files
are taken out of the page cache before each load, so both read from disk. Two loaders:

- after: `PandaGPT.load` with the config the app builds (`ModelConfig.preset` with the run flags): every
  weight read straight to the device and dtype, nothing held twice;
- before: the loader this replaced (main until issue 23), kept here as it was: ImageBind built in
  float32 and its checkpoint `torch.load`ed whole, Vicuna read by `from_pretrained` onto the CPU
  (its file memory-mapped), the LoRA merged there, then everything moved to the device and cast.
  (The original PandaGPT did the same with Vicuna in float32 before `.half().cuda()`: worse still.)

Printed per loader: the time to load, the peak RSS, RssAnon and RssFile at their highest, the RSS
before loading (every library imported, CUDA initialised), the model's own size (parameters and
buffers) and the ratios peak / model and (peak - before) / model; on CUDA, the host memory the
weights passed through (peak - before) and the GPU's peak. JSON with every figure goes to --json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

LOADERS = ("before", "after")
STATUS_FIELDS = ("VmRSS", "RssAnon", "RssFile", "VmHWM")
SAMPLE_S = 0.05


def status(pid: int | str = "self") -> dict[str, int]:
    """Resident memory fields of /proc/PID/status, in bytes."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    return {name: int(fields[name].split()[0]) * 1024 for name in STATUS_FIELDS if name in fields}


# --- the child: one load ----------------------------------------------------------------------


def load_before(config):
    """The loader before issue 23, as it was (less its error messages): see the module's docstring."""
    import torch
    from transformers import AutoModelForCausalLM

    from pandagpt_demo.model import checkpoints
    from pandagpt_demo.model.encoder import ImageBindEncoder
    from pandagpt_demo.model.pandagpt import PandaGPT, resolve_dtype

    dtype = resolve_dtype(config.run.dtype, config.run.device)
    encoder = ImageBindEncoder(config.spec.imagebind)
    encoder.model.load_state_dict(torch.load(config.files.imagebind_path, map_location="cpu", weights_only=True))
    delta = torch.load(config.files.delta_path, map_location="cpu", weights_only=True)
    tokenizer = checkpoints.load_tokenizer(config.files.vicuna_dir, config.spec.special_tokens)
    llm = AutoModelForCausalLM.from_pretrained(config.files.vicuna_dir, dtype=dtype).eval().requires_grad_(False)
    llm = checkpoints.wrap_lora(llm, config.spec.lora)
    llm.load_state_dict({target: delta[key] for key, target in checkpoints.peft_keys(delta, config.files.delta_path).items()}, strict=False)
    if config.run.merge_lora:
        llm = llm.merge_and_unload()
    proj = torch.nn.Linear(config.spec.imagebind.out_embed_dim, llm.config.hidden_size)
    proj.load_state_dict({key.removeprefix("llama_proj."): delta[key] for key in checkpoints.PROJ_KEYS})
    llm = llm.to(config.run.device, dtype)
    return PandaGPT(config, encoder.to(config.run.device, dtype), proj.to(config.run.device, dtype).requires_grad_(False), llm, tokenizer)


def child(args: argparse.Namespace) -> None:
    """Load once, print the figures as one JSON line. Imports and CUDA come first, so that what the
    load adds to the resident memory is the weights' own passage."""
    Path("/proc/self/oom_score_adj").write_text("1000")  # past the machine's memory, the kernel kills this load, nothing else
    import peft  # noqa: F401  (imported before the baseline, like everything the load uses)
    import torch
    import transformers  # noqa: F401
    from accelerate import init_empty_weights  # noqa: F401
    from transformers import LlamaForCausalLM, LlamaTokenizer  # noqa: F401

    from pandagpt_demo.config import ModelConfig
    from pandagpt_demo.model.encoder import imagebind_model_class
    from pandagpt_demo.model.pandagpt import PandaGPT

    imagebind_model_class()
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.zeros(1, device=args.device)
    config = ModelConfig.preset(args.size, args.dir, device=args.device, dtype=args.dtype, compile=False)  # as app.runtime.model_config builds it
    before = status()
    start = time.perf_counter()
    model = load_before(config) if args.child == "before" else PandaGPT.load(config)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    parts = (model.encoder, model.llama_proj, model.llm)
    tensors = [t for part in parts for t in itertools.chain(part.parameters(), part.buffers())]
    figures = {
        "load_s": round(seconds, 1),
        "rss_before": before["VmRSS"],
        "rss_after": status()["VmRSS"],
        "model_bytes": sum(t.numel() * t.element_size() for t in tensors),
        "devices": sorted({str(t.device) for t in tensors}),
        "dtypes": sorted({str(t.dtype) for t in tensors if t.is_floating_point()}),
    }
    if cuda:
        figures["gpu_peak_bytes"] = torch.cuda.max_memory_allocated(args.device)
    print(json.dumps(figures), flush=True)


# --- the parent: weights, then one child per loader -------------------------------------------


def ensure_weights(size: str, folder: Path, device: str) -> None:
    """Write the random set with the project's own command (initialised on `device`: faster on a GPU),
    unless `folder` holds it already."""
    from pandagpt_demo.config import ModelConfig

    files = ModelConfig.preset(size, folder).files
    if files.imagebind_path.is_file() and (files.vicuna_dir / "config.json").is_file() and files.delta_path.is_file():
        print(f"reusing the {size} set in {folder}", flush=True)
        return
    command = ["make-tiny", str(folder / "tiny")] if size == "tiny" else ["make-random", "--size", size, str(folder), "--device", device]
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pandagpt_demo.weights", *command], check=True)
    print(f"wrote the {size} set in {folder} in {time.perf_counter() - start:.0f} s", flush=True)


def evict(folder: Path) -> None:
    """Take the set's files out of the page cache, so that every load reads them from disk (as after a
    restart) and none is faster for coming second."""
    for path in folder.rglob("*"):
        if path.is_file():
            descriptor = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(descriptor)


def measure(loader: str, args: argparse.Namespace) -> dict:
    """One load in a fresh process, from a cold page cache: its figures, its ru_maxrss, and RssAnon/RssFile at their highest."""
    evict(args.dir)
    command = [
        sys.executable,
        __file__,
        "--child",
        loader,
        "--size",
        args.size,
        "--dir",
        str(args.dir),
        "--device",
        args.device,
        "--dtype",
        args.dtype,
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    highest: dict[str, int] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(SAMPLE_S):
            try:
                for name, value in status(process.pid).items():
                    highest[name] = max(highest.get(name, 0), value)
            except (OSError, ValueError):  # the child is exiting
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    output = process.stdout.read()
    _, wait_status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(wait_status)
    done.set()
    sampler.join()
    result = {"loader": loader, "returncode": process.returncode, "wall_s": round(time.perf_counter() - start, 1)}
    result["peak_rss"] = usage.ru_maxrss * 1024  # KiB: the kernel's high-water mark of the child
    result |= {f"max_{name}": value for name, value in highest.items() if name in ("RssAnon", "RssFile")}
    lines = [line for line in output.splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        result["error"] = "killed: out of memory?" if process.returncode in (-9, 137) else f"exit status {process.returncode}"
        return result
    result |= json.loads(lines[-1])
    result["peak_over_model"] = round(result["peak_rss"] / result["model_bytes"], 3)
    result["added_over_model"] = round((result["peak_rss"] - result["rss_before"]) / result["model_bytes"], 3)
    return result


def table(results: list[dict], device: str) -> str:
    gb = lambda value: f"{value / 1e9:.2f}" if isinstance(value, int) else "-"  # noqa: E731
    rows = [
        ("time to load (s)", lambda r: str(r.get("load_s", "-"))),
        ("peak RSS, ru_maxrss (GB)", lambda r: gb(r.get("peak_rss"))),
        ("RssAnon at its highest (GB)", lambda r: gb(r.get("max_RssAnon"))),
        ("RssFile at its highest (GB)", lambda r: gb(r.get("max_RssFile"))),
        ("RSS before loading (GB)", lambda r: gb(r.get("rss_before"))),
        ("model's own size (GB)", lambda r: gb(r.get("model_bytes"))),
        ("peak RSS / model size", lambda r: str(r.get("peak_over_model", "-"))),
        ("(peak - before) / model size", lambda r: str(r.get("added_over_model", "-"))),
    ]
    if device.startswith("cuda"):
        rows.append(
            (
                "host memory the weights passed through, peak - before (GB)",
                lambda r: gb(r["peak_rss"] - r["rss_before"]) if "rss_before" in r else "-",
            )
        )
        rows.append(("GPU peak, allocated (GB)", lambda r: gb(r.get("gpu_peak_bytes"))))
    width = max(len(label) for label, _ in rows)
    lines = [f"{'':{width}}  " + "  ".join(f"{r['loader']:>10}" for r in results)]
    lines += [f"{label:{width}}  " + "  ".join(f"{cell(r):>10}" for r in results) for label, cell in rows]
    lines += [f"{r['loader']}: {r['error']}" for r in results if "error" in r]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=("7b", "13b", "tiny"), default="7b")
    parser.add_argument("--dir", type=Path, help="the model set: reused if there, else written there and kept (default: a temporary folder, deleted)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", help="default bfloat16 on the CPU (7B fits 24 GB), float16 on CUDA (as the original)")
    parser.add_argument("--loaders", nargs="+", choices=LOADERS, default=list(LOADERS), help="which loaders to measure, in this order")
    parser.add_argument("--json", type=Path, default=Path("bench_load.json"))
    parser.add_argument("--child", choices=LOADERS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.dtype = args.dtype or ("float16" if args.device.startswith("cuda") else "bfloat16")
    if args.child:
        child(args)
        return 0
    temporary = args.dir is None
    args.dir = Path(tempfile.mkdtemp(prefix=f"bench_load_{args.size}_")) if temporary else args.dir
    try:
        ensure_weights(args.size, args.dir, args.device)
        results = []
        for loader in args.loaders:
            results.append(measure(loader, args))
            print(f"{loader}: {json.dumps(results[-1])}", flush=True)
    finally:
        if temporary:
            shutil.rmtree(args.dir, ignore_errors=True)
    print(f"\nLoading the {args.size} set on {args.device} in {args.dtype}, each load in a fresh process:\n{table(results, args.device)}")
    args.json.write_text(json.dumps({"size": args.size, "device": args.device, "dtype": args.dtype, "results": results}, indent=2))
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
