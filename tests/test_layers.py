"""The package's layers import one way only: model <- serving <- app, and weights apart.

Base modules (`errors`, `config`, `files`) may be imported by all; `model/` by all above it; `serving/` and
`weights/` use `model/` but never each other; `app/` (and the entry point `chat.py`) may use
everything. Imports inside functions count too.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

from tests.conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "pandagpt_demo"
RANK = {"errors": 0, "config": 0, "files": 0, "__init__": 0, "model": 1, "serving": 2, "weights": 2, "app": 3}
ENTRY_POINTS = {"chat": "app"}  # `python -m pandagpt_demo.chat`, the terminal chat's documented name


def layer(module: str) -> str:
    """The layer of a dotted module name inside the package (`model.encoder` -> `model`)."""
    top = module.split(".", 1)[0]
    return ENTRY_POINTS.get(top, top)


def allowed(source: str, target: str) -> bool:
    return source == target or RANK[target] < RANK[source]


def imports(path: Path, package: Path) -> list[tuple[str, int]]:
    """Modules of the package that `path` imports (dotted, relative to the package), with line numbers."""
    parts = path.relative_to(package).with_suffix("").parts
    here = list(parts[:-1])  # the subpackage the module lives in
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
                module = ".".join([*base, *(node.module.split(".") if node.module else [])])
                names = [module] if node.module else [".".join([*base, alias.name]) for alias in node.names]
            elif node.module and (node.module == package.name or node.module.startswith(package.name + ".")):
                module = node.module.removeprefix(package.name).lstrip(".")
                names = [module] if module else [alias.name for alias in node.names]
            else:
                continue
            found += [(name, node.lineno) for name in names if name]
        elif isinstance(node, ast.Import):
            found += [(alias.name.removeprefix(package.name + "."), node.lineno) for alias in node.names if alias.name.startswith(package.name + ".")]
    return found


def violations(package: Path) -> list[str]:
    problems = []
    for path in sorted(package.rglob("*.py")):
        source = layer(".".join(path.relative_to(package).with_suffix("").parts))
        for module, line in imports(path, package):
            if not allowed(source, layer(module)):
                problems.append(f"{path.relative_to(package)}:{line} ({source}) imports {module} ({layer(module)})")
    return problems


def test_every_module_belongs_to_a_known_layer() -> None:
    modules = {layer(".".join(path.relative_to(PACKAGE).with_suffix("").parts)) for path in PACKAGE.rglob("*.py")}
    assert modules <= set(RANK), f"modules outside the known layers: {modules - set(RANK)}"
    assert {"model", "serving", "weights", "app"} <= modules


def test_layers_import_one_way_only() -> None:
    assert violations(PACKAGE) == []


def test_a_back_import_is_caught(tmp_path: Path) -> None:
    copy = tmp_path / "pandagpt_demo"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    encoder = copy / "model" / "encoder.py"
    encoder.write_text(encoder.read_text() + "\n\ndef _late():\n    from ..serving.batching import BatchedDecoder\n")
    check = copy / "weights" / "check.py"
    check.write_text(check.read_text() + "\nfrom pandagpt_demo.serving import engine\n")
    found = violations(copy)
    assert any(line.startswith("model/encoder.py") and "imports serving.batching (serving)" in line for line in found), found
    assert any(line.startswith("weights/check.py") and "(weights) imports serving" in line for line in found), found
    assert len(found) == 2
