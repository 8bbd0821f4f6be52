"""The package's layers import one way only: model <- serving <- app, and weights apart; inside app,
its parts too.

Base modules (`errors`, `config`, `files`) may be imported by all; `model/` by all above it; `serving/` and
`weights/` use `model/` but never each other; `app/` (and the entry point `chat.py`) may use
everything. Inside `app/` (see docs/architecture.md):

- `conversation/` (one user's chat as data) and `runtime.py` (the model handle) use no other part;
- `public/` (sessions, uploads, draining) uses the conversation;
- `answering/` (what every endpoint shares) uses those;
- `web/` (the page), `api/` (the endpoints for programs) and `space/` (Hugging Face Spaces' glue)
  use the parts below them, never one another;
- `server.py` and `terminal.py` use everything, but only the server imports `space/`.

The web frameworks (Gradio, Starlette) are imported only by the page, the APIs, the answering core
and the server: the conversation, the terminal chat and every layer below `app/` run without them.
Imports inside functions count too.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

from tests.conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "pandagpt_demo"
RANK = {"errors": 0, "config": 0, "files": 0, "__init__": 0, "model": 1, "serving": 2, "weights": 2, "app": 3}
ENTRY_POINTS = {"chat": "app.terminal", "batch": "app.batch"}  # `python -m pandagpt_demo.chat` and `.batch`: documented names
APP_RANK = {
    "__init__": 0,
    "precision": -1,
    "runtime": 0,
    "conversation": 0,
    "public": 1,
    "answering": 2,
    "web": 3,
    "api": 3,
    "space": 3,
    "server": 4,
    "terminal": 4,
    "batch": 4,
}
IMPORTED_ONLY_BY = {"app.space": {"app.server"}}
WEB_FRAMEWORKS = ("gradio", "gradio_client", "starlette", "fastapi")
MAY_USE_WEB_FRAMEWORKS = {"app.web", "app.api", "app.answering", "app.server"}


def layer(module: str) -> str:
    """The layer of a dotted module name inside the package: `model.encoder` -> `model`, and inside
    app its part: `app.web.page` -> `app.web`, `app.server` -> `app.server`."""
    parts = module.split(".")
    if parts[0] in ENTRY_POINTS:
        return ENTRY_POINTS[parts[0]]
    return f"app.{parts[1]}" if parts[0] == "app" and len(parts) > 1 else parts[0]


def allowed(source: str, target: str) -> bool:
    if source == target:
        return True
    if target in IMPORTED_ONLY_BY and source not in IMPORTED_ONLY_BY[target]:
        return False
    top_source, top_target = source.split(".")[0], target.split(".")[0]
    if top_source == top_target == "app":
        return APP_RANK[target.split(".")[1]] < APP_RANK[source.split(".")[1]]
    return RANK[top_target] < RANK[top_source]


def imports(path: Path, package: Path) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """What `path` imports: modules of the package (dotted, relative to the package) and the
    top-level names of others, each with its line number."""
    parts = path.relative_to(package).with_suffix("").parts
    here = list(parts[:-1])  # the subpackage the module lives in
    found, outside = [], []
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
                outside.append((node.module.split(".")[0], node.lineno))
                continue
            found += [(name, node.lineno) for name in names if name]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(package.name + "."):
                    found.append((alias.name.removeprefix(package.name + "."), node.lineno))
                else:
                    outside.append((alias.name.split(".")[0], node.lineno))
    return found, outside


def violations(package: Path) -> list[str]:
    problems = []
    for path in sorted(package.rglob("*.py")):
        source = layer(".".join(path.relative_to(package).with_suffix("").parts))
        inside, outside = imports(path, package)
        for module, line in inside:
            if not allowed(source, layer(module)):
                problems.append(f"{path.relative_to(package)}:{line} ({source}) imports {module} ({layer(module)})")
        for name, line in outside:
            if name in WEB_FRAMEWORKS and source not in MAY_USE_WEB_FRAMEWORKS:
                problems.append(f"{path.relative_to(package)}:{line} ({source}) imports {name}, a web framework")
    return problems


def test_every_module_belongs_to_a_known_layer() -> None:
    modules = {layer(".".join(path.relative_to(PACKAGE).with_suffix("").parts)) for path in PACKAGE.rglob("*.py")}
    known = {*RANK, *(f"app.{part}" for part in APP_RANK)}
    assert modules <= known, f"modules outside the known layers: {modules - known}"
    assert {"model", "serving", "weights", "app.conversation", "app.web", "app.api", "app.space", "app.server"} <= modules


def test_layers_import_one_way_only() -> None:
    assert violations(PACKAGE) == []


def _append(copy: Path, module: str, line: str) -> None:
    path = copy / module
    path.write_text(path.read_text() + line)


def test_a_back_import_is_caught(tmp_path: Path) -> None:
    copy = tmp_path / "pandagpt_demo"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    _append(copy, "model/encoder.py", "\n\ndef _late():\n    from ..serving.batching import BatchedDecoder\n")
    _append(copy, "weights/check.py", "\nfrom pandagpt_demo.serving import engine\n")
    _append(copy, "app/conversation/session.py", "\nimport gradio\n")
    _append(copy, "app/web/page.py", "\nfrom pandagpt_demo.app.api.chat_tool import ChatTool\n")
    _append(copy, "app/api/chat_tool.py", "\nfrom ..web import handlers\n")
    _append(copy, "app/terminal.py", "\nfrom .space.zerogpu import on_zero_gpu\n")
    _append(copy, "app/public/housekeeping.py", "\n\ndef _late():\n    from pandagpt_demo.app.answering.metrics import Metrics\n")
    found = violations(copy)
    expected = [
        ("model/encoder.py", "imports serving.batching (serving)"),
        ("weights/check.py", "(weights) imports serving"),
        ("app/conversation/session.py", "imports gradio, a web framework"),
        ("app/web/page.py", "imports app.api.chat_tool (app.api)"),
        ("app/api/chat_tool.py", "imports app.web (app.web)"),
        ("app/terminal.py", "imports app.space.zerogpu (app.space)"),
        ("app/public/housekeeping.py", "imports app.answering.metrics (app.answering)"),
    ]
    for where, what in expected:
        assert any(line.startswith(where) and what in line for line in found), (where, what, found)
    assert len(found) == len(expected), found
