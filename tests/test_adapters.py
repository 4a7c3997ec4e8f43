"""The library adapters (jobs/adapters/) sit below the stages: they import the libraries they
adapt and jobs.common, never a stage's package, and each says what it replaces and how to
switch back (docs/hooks.py builds docs/adapters.md's table from those docstrings)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ADAPTERS = sorted((ROOT / "jobs" / "adapters").glob("[!_]*.py"))


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at its top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


@pytest.mark.parametrize("path", ADAPTERS, ids=lambda p: p.name)
def test_an_adapter_imports_no_stage(path):
    ours = {m for m in imported_modules(path) if m.split(".")[0] == "jobs"}
    allowed = ("jobs.adapters", "jobs.common")
    assert not {m for m in ours if not m.startswith(allowed)}, ours


@pytest.mark.parametrize("path", ADAPTERS, ids=lambda p: p.name)
def test_an_adapter_says_what_it_replaces_why_for_which_version_and_how_to_switch_back(path):
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import hooks
    finally:
        sys.path.remove(str(ROOT / "docs"))
    fields = hooks.adapter_fields(path)  # raises naming what is missing
    assert all(fields.values())
    assert path in hooks.ADAPTERS
