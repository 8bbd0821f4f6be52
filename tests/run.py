"""The test command: install what the tests need on this machine, then run pytest.

    python tests/run.py [--dry-run] [--requirements FILE] [PYTEST ARGS...]

Needs nothing but Python 3.11 to start. Debian packages (DEBIAN: the command each provides) whose
command is missing are installed with apt-get when this runs as root where apt-get exists;
otherwise the command to install them is printed and the run stops (exit 2), since the tests
would fail without them. Python packages of the requirements file that are missing or at another
version are installed with pip (the package itself editable, as the file says). Then pytest runs
with the remaining arguments. `--dry-run` lists what would be installed and exits 0, touching
nothing. CI (.ci/run) runs this same command.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEBIAN = {  # package -> the command it provides, and what needs it
    "ffmpeg": ("ffmpeg", "video and audio decoding"),
    "chromium": ("chromium", "the browser tests (Playwright drives Debian's Chromium)"),
    "sox": ("sox", "the example sounds"),
    "espeak-ng": ("espeak-ng", "the example speech"),
    "g++": ("g++", "torch.compile's CPU kernels in the compiled-decode test"),
    "npm": ("npx", "the MCP Inspector's CLI (npm @modelcontextprotocol/inspector) in the MCP test"),
}


def missing_debian(which: Callable[[str], str | None] = shutil.which) -> list[str]:
    """The Debian packages whose command is not on PATH."""
    return [package for package, (command, _) in DEBIAN.items() if which(command) is None]


def requirements(file: Path) -> list[str]:
    """The requirement lines of `file` and the files it includes (-r), comments and options dropped; `-e .` kept."""
    lines = []
    for raw in file.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-r "):
            lines += requirements(file.parent / line[3:].strip())
        elif line.startswith("-e ") or not line.startswith("-"):
            lines.append(line)
    return lines


def unsatisfied(line: str) -> bool:
    """Whether the installed packages do not meet one requirement line."""
    from pip._vendor.packaging.requirements import Requirement  # pip's own parser: present wherever pip is

    if line.startswith("-e "):
        return _missing("pandagpt-demo")
    requirement = Requirement(line)
    try:
        version = importlib.metadata.version(requirement.name)
    except importlib.metadata.PackageNotFoundError:
        return True
    return not requirement.specifier.contains(version, prereleases=True)


def _missing(name: str) -> bool:
    try:
        importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return True
    return False


def apt_get_usable() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get") is not None


def install_debian(packages: list[str], dry_run: bool, can_apt: bool) -> bool:
    """Install (or, dry, list) `packages`; False when they cannot be installed from here."""
    if not packages:
        print("Debian packages: all present.")
        return True
    for package in packages:
        command, why = DEBIAN[package]
        print(f"Debian package {package}: missing (no `{command}` on PATH; needed for {why})")
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
    if not can_apt:
        print(f"Install them first, as root: apt-get update && {' '.join(install)}  (or your system's equivalents)")
        return dry_run
    print(f"{'Would run' if dry_run else 'Running'}: apt-get update -qq && {' '.join(install)}")
    if not dry_run:
        environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=environment)
        subprocess.run(install, check=True, env=environment, stdout=subprocess.DEVNULL)
    return True


def install_python(file: Path, dry_run: bool) -> None:
    todo = [line for line in requirements(file) if unsatisfied(line)]
    if not todo:
        print(f"Python packages of {file.name}: all installed.")
        return
    for line in todo:
        print(f"Python package {line}: missing or at another version")
    command = [sys.executable, "-m", "pip", "install", "-q", "-r", str(file)]
    print(f"{'Would run' if dry_run else 'Running'}: {' '.join(command)}")
    if not dry_run:
        subprocess.run(command, check=True, cwd=REPO_ROOT, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="list what would be installed; install and test nothing")
    parser.add_argument("--requirements", type=Path, default=REPO_ROOT / "requirements-test.txt")
    args, pytest_args = parser.parse_known_args(argv)
    if not install_debian(missing_debian(), args.dry_run, apt_get_usable()):
        return 2
    install_python(args.requirements, args.dry_run)
    if args.dry_run:
        return 0
    return subprocess.run([sys.executable, "-m", "pytest", *pytest_args], cwd=REPO_ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
