"""Code that tests share is written once, in tests/support/ (docs/testing.md): no test module imports
another, and the repository's root and a free port are each defined there only (as is the environment a
command runs in: tests.support.processes)."""

from __future__ import annotations

import ast
import re

from tests.support.paths import ROOT

TESTS = ROOT / "tests"


def test_no_test_module_imports_another():
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            found += [f"{path.relative_to(ROOT)}: {n}" for n in names if re.match(r"tests\.test_", n)]
    assert found == []


def test_root_and_free_port_are_defined_once():
    defined: dict[str, list[str]] = {"ROOT": [], "free_port": []}
    for path in sorted(TESTS.rglob("*.py")):
        source = path.read_text()
        where = str(path.relative_to(ROOT))
        defined["ROOT"] += [where] * len(re.findall(r"^ROOT\s*=", source, re.M))
        defined["free_port"] += [where] * len(re.findall(r"^\s*def free_port\b", source, re.M))
    assert defined == {"ROOT": ["tests/support/paths.py"], "free_port": ["tests/support/processes.py"]}
