"""The app launched as a user launches it: `app.py` (or a test's wrapper of it) in a subprocess on a free port.

`App` is one such process; the `start` fixture (conftest.py) starts them and stops them after the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pandagpt_demo.config import ModelConfig
from tests.conftest import REPO_ROOT, _free_port, _wait_until_ready


class App:
    """One app process: its URL, its upload folder, and how it ended."""

    def __init__(
        self,
        config: ModelConfig,
        tmp_path: Path,
        *flags: str,
        slow_step: float | None = None,
        script: str | None = None,
        env: dict[str, str] | None = None,
        checkpoints: Path | None = None,
        python_path: tuple[Path, ...] = (),
    ) -> None:
        """`script` runs instead of app.py (tests/slow_app.py with `slow_step`); `env` is added to this
        process's; `checkpoints` (default: the tiny model's folder); `python_path` goes before the repository."""
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.uploads = tmp_path / f"uploads-{self.port}"
        self.log = tmp_path / f"app-{self.port}.log"
        script = script or ("tests/slow_app.py" if slow_step else "app.py")
        checkpoints = checkpoints or config.files.imagebind_path.parent.parent
        command = [sys.executable, script, "--model", "tiny", "--checkpoints", str(checkpoints), "--port", str(self.port), *flags]
        env = {
            **os.environ,
            "GRADIO_TEMP_DIR": str(self.uploads),
            "SLOW_STEP_SECONDS": str(slow_step or 0),
            "PYTHONPATH": os.pathsep.join(map(str, (*python_path, REPO_ROOT))),
            **(env or {}),
        }
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            _wait_until_ready(self.url, self.process, self.log)
        except BaseException:  # an app that never got ready is not the fixture's to stop: stop it here
            self.stop()
            raise

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)

    def folder_bytes(self) -> int:
        """Bytes in the upload folder now (files deleted while it is walked count as gone)."""
        total = 0
        for folder, _, names in os.walk(self.uploads):
            for name in names:
                try:
                    total += os.stat(os.path.join(folder, name)).st_size
                except FileNotFoundError:
                    pass
        return total
