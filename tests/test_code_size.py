"""Issue 15's size rules hold for every module under src/: at most 450 lines a module, 60 lines a function and
cyclomatic complexity 15 (radon's measure).

Run from the test command so that CI, not a reviewer's memory, keeps the code readable; the migrations are
generated one-offs and are left out.
"""

from __future__ import annotations

from pathlib import Path

from radon.complexity import cc_visit
from radon.visitors import Function

SRC = Path(__file__).resolve().parents[1] / "src" / "postroom"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60
MAX_COMPLEXITY = 15


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "migrations" not in p.parts)


def _functions(path: Path) -> list[tuple[str, Function]]:
    """Every function and method of a module, nested ones included, with the name a reader would grep for."""
    found: list[tuple[str, Function]] = []

    def visit(block: object, prefix: str) -> None:
        for inner in getattr(block, "closures", []):
            found.append((f"{prefix}{inner.name}", inner))
            visit(inner, f"{prefix}{inner.name}.")

    for block in cc_visit(path.read_text()):
        for function in getattr(block, "methods", None) or ([block] if isinstance(block, Function) else []):
            name = f"{block.name}.{function.name}" if function is not block else function.name
            found.append((name, function))
            visit(function, f"{name}.")
    return found


def test_no_module_is_over_the_limit() -> None:
    long = [f"{p.relative_to(SRC)}: {n} lines" for p in _modules()
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
    assert not long, long


def test_no_function_is_too_long_or_too_complex() -> None:
    found = [f"{path.relative_to(SRC)}:{function.lineno} {name}: complexity {function.complexity}, "
             f"{function.endline - function.lineno + 1} lines"
             for path in _modules() for name, function in _functions(path)
             if function.complexity > MAX_COMPLEXITY or function.endline - function.lineno + 1 > MAX_FUNCTION_LINES]
    assert not found, found


def test_the_checks_see_what_they_measure(tmp_path: Path) -> None:
    """The walk must reach methods and nested functions, or a real offender would pass unseen."""
    branches = "\n".join(f"        if x == {n}:\n            return {n}" for n in range(16))
    source = f"class A:\n    def outer(self, x):\n        def inner(x):\n            return x\n{branches}\n"
    sample = tmp_path / "sample.py"
    sample.write_text(source)
    measured = dict((name, function.complexity) for name, function in _functions(sample))
    assert measured["A.outer"] > MAX_COMPLEXITY
    assert "A.outer.inner" in measured
