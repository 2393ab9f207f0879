"""Turn a validated rules file into compiled rules: regexes compiled, positions attached."""

from __future__ import annotations

import dataclasses
from pathlib import Path as FsPath
from typing import Any

from postroom.rules import actions, schema
from postroom.rules.bounds import MAX_FILE_BYTES
from postroom.rules.conditions import PREDICATES, Kind
from postroom.rules.errors import RulesError
from postroom.rules.model import Action, Assign, Rule, Ruleset
from postroom.rules.positions import Located, Path
from postroom.rules.tree import All, Always, AnyOf, Leaf, Node, Not

_PARAMS = {Kind.HEADER: "name", Kind.CONTACT: "attribute"}


def parse_ruleset(text: str, filename: str = "<rules>") -> Ruleset:
    """Validate and compile YAML text; RulesError with file:line:col lines on any problem."""
    model, where = schema.validate(text, filename)
    data = model.model_dump(by_alias=True, exclude_none=True)
    rules = []
    for i, rule in enumerate(data["rules"]):
        path: Path = ("rules", i)
        when = rule.get("when")
        condition = _condition(when, (*path, "when"), where) if when else Always(_at(where, path))
        rules.append(Rule(
            name=rule["name"],
            line=where[path].value.line,
            condition=condition,
            actions=_placed(actions.from_then(rule["then"], rule["name"]), (*path, "then"), where),
            stop=bool(rule["then"].get("stop")),
            enabled=rule["enabled"],
        ))
    return Ruleset(source=filename, rules=tuple(rules))


def read_ruleset(path: str | FsPath) -> Ruleset:
    """Read and compile a rules file; unreadable or oversized files are RulesErrors too (read no further)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise RulesError([f"{path}:1:1: rules file is too large (more than {MAX_FILE_BYTES} bytes)"])
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError([f"{path}:1:1: cannot read rules file: {exc}"]) from None
    return parse_ruleset(text, str(path))


def _placed(found: tuple[Action, ...], then: Path, where: dict[Path, Located]) -> tuple[Action, ...]:
    """Each action with the line:col of its value, so later checks (the tenant's directory) can point at it."""
    placed = []
    for action in found:
        path: Path = (*then, action.kind)
        if isinstance(action.value, Assign):
            path = (*path, action.value.kind)
        placed.append(dataclasses.replace(action, at=_at(where, path)) if path in where else action)
    return tuple(placed)


def _at(where: dict[Path, Located], path: Path) -> str:
    pos = where[path].value
    return f"{pos.line}:{pos.col}"


def _condition(data: dict[str, Any], path: Path, where: dict[Path, Located]) -> Node:
    (key, value), = data.items()
    here = (*path, key)
    if key in ("all", "any"):
        children = tuple(_condition(c, (*here, i), where) for i, c in enumerate(value))
        return (All if key == "all" else AnyOf)(children, _at(where, path))
    if key == "not":
        return Not(_condition(value, here, where), _at(where, path))
    kind = PREDICATES[key].kind
    if kind is Kind.FLAG:
        return Leaf(key, None, "flag", value, _at(where, here))
    param_key = _PARAMS.get(kind)
    param = value.pop(param_key) if param_key else None
    (op, operand), = value.items()
    return Leaf(key, param, op, operand, _at(where, (*here, op)))
