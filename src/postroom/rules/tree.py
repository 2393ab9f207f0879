"""Condition trees compiled from ``when:``: fast closures plus an explaining walk.

Each node's ``test`` is a plain closure built once at load time, so the hot
path has no tree walking or method dispatch; ``explain`` is the slower walk
``rules test`` uses to say which condition decided.
"""

from __future__ import annotations

import json
from typing import Any

from postroom.rules.conditions import OPERATORS, PREDICATES, Facts, Kind, Test


class Node:
    """A condition tree node.

    ``test`` is a plain closure (no bound-method or tree-walking overhead on
    the hot path); ``explain`` is the slower walk that also says which node
    decided. ``where`` is ``line:col`` in the rules file; ``fields`` names
    the predicates the subtree reads (the gateway only decides at DATA time
    rules that need no threading facts).
    """

    test: Test
    text: str
    where: str
    fields: frozenset[str] = frozenset()

    def explain(self, facts: Facts) -> tuple[bool, Node]:
        """Outcome plus the node that decided it."""
        return self.test(facts), self


class Leaf(Node):
    def __init__(self, name: str, param: str | None, op: str, operand: Any, where: str) -> None:
        view, build = OPERATORS[op]
        numeric = PREDICATES[name].kind in (Kind.NUMBER, Kind.FLAG)
        label = f"{name} {param}" if param else name
        self.fields = frozenset({name})
        self.text = f"{label} is {json.dumps(operand)}" if op == "flag" else (
            f"{label} {op} {json.dumps(operand, ensure_ascii=False)}"
        )
        self.where = where
        check = build(operand, ("raw" if numeric else view, name, param))
        self.test = self._bounded(check) if op == "matches" else check

    def _bounded(self, check: Test) -> Test:
        """A timed-out regex counts as no match and leaves a warning naming the rule's position."""

        def test(facts: Facts) -> bool:
            try:
                return check(facts)
            except TimeoutError as exc:
                facts.warnings.append(f"{self.where}: {self.text}: {exc}; treated as no match")
                return False

        return test


class All(Node):
    def __init__(self, children: tuple[Node, ...], where: str) -> None:
        self.children = children
        self.fields = frozenset().union(*(c.fields for c in children))
        self.text = f"all {len(children)} conditions matched"
        self.where = where
        tests = tuple(c.test for c in children)
        if len(tests) == 2:
            a, b = tests
            self.test = lambda f: a(f) and b(f)
        else:
            self.test = lambda f: all(t(f) for t in tests)

    def explain(self, facts: Facts) -> tuple[bool, Node]:
        for child in self.children:
            ok, decider = child.explain(facts)
            if not ok:
                return False, decider
        return True, self


class AnyOf(Node):
    def __init__(self, children: tuple[Node, ...], where: str) -> None:
        self.children = children
        self.fields = frozenset().union(*(c.fields for c in children))
        self.text = f"none of {len(children)} conditions matched (any)"
        self.where = where
        tests = tuple(c.test for c in children)
        if len(tests) == 2:
            a, b = tests
            self.test = lambda f: a(f) or b(f)
        else:
            self.test = lambda f: any(t(f) for t in tests)

    def explain(self, facts: Facts) -> tuple[bool, Node]:
        for child in self.children:
            ok, decider = child.explain(facts)
            if ok:
                return True, decider
        return False, self


class Not(Node):
    def __init__(self, child: Node, where: str) -> None:
        self.child = child
        self.fields = child.fields
        self.text = f"not ({child.text})"
        self.where = where
        inner = child.test
        self.test = lambda f: not inner(f)

    def explain(self, facts: Facts) -> tuple[bool, Node]:
        ok, decider = self.child.explain(facts)
        return not ok, self if decider is self.child else _Negated(decider)


class _Negated(Node):
    """Report a decider found under ``not`` with the negation visible."""

    def __init__(self, inner: Node) -> None:
        self.text = f"not ({inner.text})"
        self.where = inner.where


class Always(Node):
    """A rule without ``when`` applies to every message."""

    def __init__(self, where: str) -> None:
        self.text = "always (no conditions)"
        self.where = where
        self.test = _always


def _always(_: Facts) -> bool:
    return True
