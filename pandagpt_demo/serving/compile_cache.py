"""Where compiled decode steps are kept between starts, so a restart does not compile for minutes.

Inductor keeps what it compiled (FX graphs, AOTAutograd graphs, generated kernels) in
`$TORCHINDUCTOR_CACHE_DIR` (default: a folder in /tmp) and Triton its GPU binaries in
`$TRITON_CACHE_DIR` (default: ~/.triton). On a Space, /tmp and the home folder are wiped at every
restart; its persistent storage is not. Both are read when compiling starts, so pointing them at a
kept folder before the warm-up is enough. Variables already set by the user win.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

INDUCTOR_ENV = "TORCHINDUCTOR_CACHE_DIR"
TRITON_ENV = "TRITON_CACHE_DIR"


def use_compile_cache(folder: Path | None) -> None:
    """Keep compiles in `folder` (created if missing); None: the compilers' own defaults."""
    if folder is None:
        return
    for variable, sub in ((INDUCTOR_ENV, "inductor"), (TRITON_ENV, "triton")):
        if os.environ.get(variable):
            log.info("compile cache: $%s=%s (set by you) is kept", variable, os.environ[variable])
            continue
        path = folder / sub
        path.mkdir(parents=True, exist_ok=True)
        os.environ[variable] = str(path)
    log.info("compile cache: %s", folder)
