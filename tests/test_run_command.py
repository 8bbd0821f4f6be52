"""The README's test command (tests/run.py): on a machine that lacks what the tests need, it says
what it would install (dry run) or how to install it, before any test runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests import run
from tests.conftest import REPO_ROOT


def test_a_dry_run_on_a_bare_machine_lists_every_missing_package_and_installs_nothing(tmp_path: Path) -> None:
    bare = tmp_path / "bin"  # a PATH with nothing on it: no ffmpeg, chromium, sox, espeak-ng, g++ or apt-get
    bare.mkdir()
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"-r {REPO_ROOT / 'requirements.txt'}\nsurely-not-installed-package==1.0  # a package this machine lacks\n")
    result = subprocess.run(
        # this very interpreter, by its path: a link to it elsewhere would leave a virtualenv (Python
        # finds its venv from where the executable lies) and see none of its packages
        [sys.executable, "tests/run.py", "--dry-run", "--requirements", str(requirements)],
        cwd=REPO_ROOT,
        env={**os.environ, "PATH": str(bare)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for package in run.DEBIAN:
        assert f"Debian package {package}: missing" in out
    assert "Install them first, as root: apt-get update && apt-get install -y -qq --no-install-recommends ffmpeg chromium sox espeak-ng g++" in out
    assert "Python package surely-not-installed-package==1.0: missing or at another version" in out
    assert "Python package torch" not in out  # what is installed at the asked version is left alone
    assert f"Would run: {sys.executable} -m pip install -q -r {requirements}" in out
    assert "passed" not in out  # no test ran


def test_as_root_with_apt_get_it_installs_the_missing_debian_packages_itself(capsys) -> None:
    assert run.install_debian(["ffmpeg", "g++"], dry_run=True, can_apt=True)
    assert "Would run: apt-get update -qq && apt-get install -y -qq --no-install-recommends ffmpeg g++" in capsys.readouterr().out
    assert not run.install_debian(["chromium"], dry_run=False, can_apt=False)  # cannot install: the run stops (exit 2)
    assert run.missing_debian(lambda command: None if command == "sox" else f"/usr/bin/{command}") == ["sox"]


def test_requirement_lines_follow_includes_and_compare_versions(tmp_path: Path) -> None:
    lines = run.requirements(REPO_ROOT / "requirements-test.txt")
    assert "-e ." in lines and "torch==2.9.1" in lines and "pytest" in lines  # requirements.txt included through -r
    assert not any(line.startswith("#") or " #" in line for line in lines)
    assert not run.unsatisfied("pytest") and run.unsatisfied("pytest<1") and run.unsatisfied("surely-not-installed-package")
