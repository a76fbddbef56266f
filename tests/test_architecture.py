"""The layers of docs/architecture.md, checked on the source: what each module imports, directly or not."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

from tests.support.paths import ROOT

PACKAGE = ROOT / "charrnn"
TRAINING_ONLY = {"lightning", "jsonargparse"}
WEB = {"fastapi", "uvicorn", "starlette", "pydantic"}
WEB_MODULES = {"charrnn.server.app", "charrnn.server.api", "charrnn.server.rnn_writer", "charrnn.server.context",
               "charrnn.server.connections", "charrnn.server.cli", "charrnn.serve"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def documented_layers() -> dict[str, str]:
    """module -> layer, from the Modules table of docs/architecture.md (a folder stands for its modules)."""
    rows = re.findall(r"^\| `(charrnn/[\w/.]+)` \| (\w+) \|", (ROOT / "docs" / "architecture.md").read_text(), re.M)
    layers = {}
    for path, layer in rows:
        if path.endswith("/"):
            layers.update({m: layer for m, p in MODULES.items() if str(p.relative_to(ROOT)).startswith(path)})
        else:
            layers[module_name(ROOT / path)] = layer
    return layers


LAYERS = documented_layers()


@cache
def direct_imports(module: str) -> frozenset[str]:
    """Every module named by an import statement anywhere in ``module`` (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names
                         if f"{node.module}.{alias.name}" in MODULES)
    return frozenset(found)


def reachable(module: str) -> set[str]:
    """The charrnn modules and the top-level outside packages that importing ``module`` imports."""
    seen, todo, outside = set(), [module], set()
    while todo:
        for name in direct_imports(todo.pop()):
            if name in MODULES:
                if name not in seen:
                    seen.add(name)
                    todo.append(name)
            elif not name.startswith("charrnn"):
                outside.add(name.split(".")[0])
    return seen | outside


def test_every_module_is_in_the_architecture_table():
    missing = sorted(m for m in MODULES if m not in LAYERS and m not in ("charrnn", "charrnn.server", "charrnn.ckpt",
                                                                            "charrnn.callbacks"))
    assert not missing, f"add these to the Modules table of docs/architecture.md: {missing}"
    assert set(LAYERS.values()) == {"core", "training", "server"}


@pytest.mark.parametrize("module", sorted(m for m, layer in LAYERS.items() if layer == "core"))
def test_core_modules_need_neither_lightning_nor_the_web_stack(module):
    bad = {m for m in reachable(module) if m in TRAINING_ONLY | WEB or LAYERS.get(m, "core") != "core"}
    assert not bad, f"{module} (core) imports {sorted(bad)}"


@pytest.mark.parametrize("module", sorted(m for m, layer in LAYERS.items() if layer == "training"))
def test_training_modules_know_nothing_of_the_server(module):
    bad = {m for m in reachable(module) if m in WEB or LAYERS.get(m) == "server"}
    assert not bad, f"{module} (training) imports {sorted(bad)}"


@pytest.mark.parametrize("module", sorted(m for m, layer in LAYERS.items() if layer == "server"))
def test_server_modules_know_nothing_of_training_and_only_the_web_modules_load_the_web_stack(module):
    bad = {m for m in reachable(module) if m in TRAINING_ONLY or LAYERS.get(m) == "training"}
    if module not in WEB_MODULES:
        bad |= {m for m in reachable(module) if m in WEB}
    assert not bad, f"{module} (server) imports {sorted(bad)}"


def test_the_package_reads_nothing_of_the_repositorys_setting_folders():
    """configs/ and the top-level callbacks/ are the repository's, not the installed package's: charrnn-train
    run outside the repository must not need them."""
    named = {m for m, path in MODULES.items() if re.search(r"(?<![\w/.])(configs|callbacks)/", path.read_text())}
    assert not named, f"these modules name a folder of the repository: {sorted(named)}"
