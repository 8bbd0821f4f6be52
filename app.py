"""PandaGPT demo: `python app.py` starts the web app (see `python app.py --help`); a Space runs this file."""

import os

if os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true"):
    import spaces  # noqa: F401 - ZeroGPU: imported before anything touches CUDA, so that it can stand in for it

from pandagpt_demo.app.server import main

if __name__ == "__main__":
    main()
