"""Command line for checkpoint folders: `python -m pandagpt_demo.weights {download,check,make-tiny,...}`.

- `download --model {7b,13b} [--dir checkpoints]`: fetch ImageBind, Vicuna v0 and PandaGPT's delta
  into the layout the app loads, verify them and write `manifest.json` (see `download.py`). Its
  source flags are this command's own: `app.py --download` fetches from the defaults only, into
  its `--checkpoints` folder.
- `check [--dir checkpoints] [--model 7b|13b|tiny]`: a table OK / missing / wrong per file and the
  command that fixes each problem; exit code 0 only when the app can load the folder.
- `apply-delta BASE DELTA OUT`: Vicuna v0 = LLaMA + LMSYS's delta, for folders you already have.
- `make-tiny DIR`: a tiny random model set in exactly the released formats (see `synthetic.py`),
  its Vicuna folder written afresh (nothing left from an earlier one).
- `make-random --size {7b,13b} DIR`: random weights at the real sizes in the layout the app loads
  with `--checkpoints DIR --model SIZE`, for checks and benchmarks without the real files; written
  shard by shard (host memory holds one 2 GB shard), `--imagebind FILE` links an ImageBind file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pandagpt_demo.config import IMAGEBIND_URL, IMAGEBIND_URL_ENV, MODEL_SIZES, WEIGHT_SOURCES, ModelConfig


def add_download_arguments(parser: argparse.ArgumentParser) -> None:
    """The source flags of `download`; `app.py --download` has none of them (it uses the defaults)."""

    def defaults(part: str) -> str:
        return "; ".join(f"{size} " + ", then ".join(c.label for c in sources.candidates(part)) for size, sources in WEIGHT_SOURCES.items())

    def pair(index: int) -> str:
        return "default: " + ", ".join(f"{size} {sources.from_delta().ids[index]}" for size, sources in WEIGHT_SOURCES.items())

    released = ", ".join(repo for sources in WEIGHT_SOURCES.values() for repo in (*sources.delta[0].ids, *sources.delta_variants))
    group = parser.add_argument_group("sources (tried in order per model size: WEIGHT_SOURCES in pandagpt_demo/config.py); each flag forces one")
    group.add_argument("--delta-repo", metavar="ID", help=f"PandaGPT delta repo on the Hub (released: {released}; default: {defaults('delta')})")
    vicuna = group.add_mutually_exclusive_group()
    vicuna.add_argument(
        "--vicuna", type=Path, metavar="DIR", dest="vicuna_dir", help="a merged Vicuna v0 folder you already have (linked, not copied)"
    )
    vicuna.add_argument(
        "--vicuna-repo", metavar="ID", help=f"a merged Vicuna v0 repo on the Hub (without a flag, the first usable of: {defaults('vicuna')})"
    )
    vicuna.add_argument("--from-delta", action="store_true", help="build Vicuna from LLaMA + LMSYS's v0 delta (needs base + delta + result on disk)")
    group.add_argument("--base-repo", metavar="ID", help=f"LLaMA repo for --from-delta ({pair(0)})")
    group.add_argument("--vicuna-delta-repo", metavar="ID", help=f"Vicuna delta repo for --from-delta ({pair(1)})")
    imagebind = group.add_mutually_exclusive_group()
    imagebind.add_argument("--imagebind-repo", metavar="ID", help="a Hugging Face mirror of imagebind_huge.pth instead of the official URL")
    imagebind.add_argument(
        "--imagebind-url", metavar="URL", help=f"another URL for imagebind_huge.pth (default {IMAGEBIND_URL}, or ${IMAGEBIND_URL_ENV})"
    )
    parser.add_argument("--replace", action="store_true", help="replace parts that are present but wrong (or came from another source)")


def download_request(args: argparse.Namespace, model: str, directory: Path):
    from .download import Request

    return Request(
        model=model,
        directory=directory,
        delta_repo=args.delta_repo,
        vicuna_dir=args.vicuna_dir,
        vicuna_repo=args.vicuna_repo,
        from_delta=args.from_delta,
        base_repo=args.base_repo,
        vicuna_delta_repo=args.vicuna_delta_repo,
        imagebind_repo=args.imagebind_repo,
        imagebind_url=args.imagebind_url,
        replace=args.replace,
        directory_flag="--dir",
    )


def run_download(request) -> int:
    """Run a download, print the final table; 0 when the folder is loadable, 1 otherwise."""
    from .download import download
    from .fetch_errors import DownloadError

    try:
        report = download(request)
    except DownloadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(report.table())
    return 0 if report.ok else 1


def _sizes_present(directory: Path) -> list[str]:
    """The real model sizes with anything in `directory` (7b if none)."""
    found = []
    for size in ("7b", "13b"):
        config = ModelConfig.preset(size, directory)
        if config.files.vicuna_dir.exists() or config.files.delta_path.parent.exists():
            found.append(size)
    return found or ["7b"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pandagpt_demo.weights", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    fetch = commands.add_parser("download", help="fetch, assemble and verify a real model set")
    fetch.add_argument("--model", choices=MODEL_SIZES, required=True, help="7b or 13b (tiny: only with every source flag, for tests)")
    fetch.add_argument("--dir", type=Path, default=Path("checkpoints"), help="checkpoints folder (default: checkpoints/)")
    add_download_arguments(fetch)

    check = commands.add_parser("check", help="verify a checkpoints folder; exit 0 only if the app can load it")
    check.add_argument("--dir", type=Path, default=Path("checkpoints"), help="checkpoints folder (default: checkpoints/)")
    check.add_argument("--model", choices=MODEL_SIZES, help="default: every real size with files in --dir (7b if none)")
    check.add_argument("--hash", action="store_true", help="also compare sha256 sums with manifest.json (reads every byte)")

    apply = commands.add_parser("apply-delta", help="Vicuna v0 = LLaMA folder + LMSYS delta folder (float16 safetensors)")
    apply.add_argument("base", type=Path)
    apply.add_argument("delta", type=Path)
    apply.add_argument("out", type=Path)

    tiny = commands.add_parser("make-tiny", help="write a tiny random model set in the released formats")
    tiny.add_argument("directory", type=Path)
    tiny.add_argument("--seed", type=int, default=0)
    real = commands.add_parser("make-random", help="write random weights at a real size (tens of GB)")
    real.add_argument("directory", type=Path)
    real.add_argument("--size", choices=("7b", "13b"), required=True)
    real.add_argument("--seed", type=int, default=0)
    real.add_argument("--device", default="cpu", help="where to initialise the weights (cuda is much faster)")
    real.add_argument("--imagebind", type=Path, metavar="FILE", help="link this ImageBind checkpoint instead of writing a random one (4.5 GB)")
    args = parser.parse_args(argv)

    if args.command == "download":
        return run_download(download_request(args, args.model, args.dir))
    if args.command == "check":
        from .check import check_model

        status = 0
        for size in [args.model] if args.model else _sizes_present(args.dir):
            report = check_model(ModelConfig.preset(size, args.dir), size, hashes=args.hash)
            print(report.table())
            status = status or (0 if report.ok else 1)
        return status
    if args.command == "apply-delta":
        from pandagpt_demo.model.tensorfiles import UnreadableFile

        from .delta import DeltaMismatch, apply_delta

        if args.out.exists() and any(args.out.iterdir()):
            parser.error(f"{args.out} is not empty")
        try:
            apply_delta(args.base, args.delta, args.out)
        except (DeltaMismatch, UnreadableFile, OSError) as error:  # each names its file: one line, no traceback
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"wrote {args.out}/")
        return 0

    from .synthetic import make_tiny, write_random_model_set

    try:
        if args.command == "make-tiny":
            config = make_tiny(args.directory, args.seed)
        else:
            config = ModelConfig.preset(args.size, args.directory)
            config = write_random_model_set(config, args.size, args.seed, args.device, imagebind_from=args.imagebind)
    except FileExistsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {config.files.imagebind_path}, {config.files.vicuna_dir}/, {config.files.delta_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
