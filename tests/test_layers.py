"""The layers hold: import-linter's contracts in pyproject.toml pass, and no two top-level packages import each other.

Run from the test command so that CI breaks when a stage reaches across a layer.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def _package_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle in a directed graph as a path, or None (depth-first search with colours)."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_cycle_finder_finds_a_cycle() -> None:
    assert _package_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _package_cycle({"a": {"b"}, "b": {"c"}}) is None


def test_no_cycle_between_top_level_packages() -> None:
    graph = grimp.build_graph("postroom")
    edges: dict[str, set[str]] = {}
    for module in graph.modules:
        top = ".".join(module.split(".")[:2])
        for imported in graph.find_modules_directly_imported_by(module):
            other = ".".join(imported.split(".")[:2])
            if other != top:
                edges.setdefault(top, set()).add(other)
    assert _package_cycle(edges) is None, " -> ".join(_package_cycle(edges) or [])
