"""Command line for checkpoint folders: `python -m pandagpt_demo.weights make-tiny DIR`.

- `make-tiny DIR`: a tiny random model set in exactly the released formats (see `synthetic.py`).
- `make-random --size {7b,13b} DIR`: random weights at the real sizes in the layout the app loads
  with `--checkpoints DIR --model SIZE`, for GPU checks and benchmarks without the real files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .config import ModelConfig
from .synthetic import make_tiny, write_random_model_set


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pandagpt_demo.weights", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    tiny = commands.add_parser("make-tiny", help="write a tiny random model set in the released formats")
    tiny.add_argument("directory", type=Path)
    tiny.add_argument("--seed", type=int, default=0)
    real = commands.add_parser("make-random", help="write random weights at a real size (tens of GB)")
    real.add_argument("directory", type=Path)
    real.add_argument("--size", choices=("7b", "13b"), required=True)
    real.add_argument("--seed", type=int, default=0)
    real.add_argument("--device", default="cpu", help="where to initialise the weights (cuda is much faster)")
    args = parser.parse_args(argv)
    if args.command == "make-tiny":
        config = make_tiny(args.directory, args.seed)
    else:
        config = write_random_model_set(ModelConfig.preset(args.size, args.directory), args.size, args.seed, args.device)
    print(f"wrote {config.imagebind_path}, {config.vicuna_dir}/, {config.delta_path}")


if __name__ == "__main__":
    main()
