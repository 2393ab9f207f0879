"""YAML loading that remembers where every key and value sits in the file.

PyYAML's ``compose`` keeps node marks; we build plain Python data from the
node tree ourselves so each path (``("rules", 0, "when")``) maps to a
position, duplicate keys are errors instead of silently overwriting, and
only ``true``/``false`` are booleans (YAML 1.1 turns ``YES`` or ``on`` into
``True``, which surprises people matching header values).

Anchors, aliases and merge keys are refused: rules files are short and hand
written, and expanding aliases is how 380 bytes of YAML become gigabytes of
data ("billion laughs"). Size, nesting depth and node count are bounded while
composing, so reading a file costs at most a constant times its size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from postroom.rules.bounds import MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES
from postroom.rules.errors import RulesError

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Pos:
    """1-based line and column."""

    line: int
    col: int

    @classmethod
    def of(cls, mark: yaml.Mark) -> Pos:
        return cls(mark.line + 1, mark.column + 1)


@dataclass(frozen=True)
class Located:
    """Where a path's key (None for the root or list items) and value start."""

    key: Pos | None
    value: Pos


class _Resolver(yaml.resolver.Resolver):
    """Default resolver minus YAML 1.1's yes/no/on/off booleans."""


_Resolver.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
}
for _first in "tTfF":
    _Resolver.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), [_first]
    )


class _Refused(yaml.MarkedYAMLError):
    """YAML that is valid but outside what rules files may use."""


class _Loader(
    yaml.reader.Reader,
    yaml.scanner.Scanner,
    yaml.parser.Parser,
    yaml.composer.Composer,
    yaml.constructor.SafeConstructor,
    _Resolver,
):
    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        _Resolver.__init__(self)
        self.depth = 0
        self.nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        """Refuse anchors and aliases before they are followed, and stop past the depth and node bounds."""
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _Refused(problem="anchors (&name) and aliases (*name) are not allowed in rules files; "
                                   "write the value out", problem_mark=event.start_mark)
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _Refused(problem=f"more than {MAX_NODES} YAML values; rules files are limited to that",
                           problem_mark=event.start_mark)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Refused(problem=f"nested deeper than {MAX_DEPTH} levels", problem_mark=event.start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


_COLLECTION_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})


def load(text: str, filename: str) -> tuple[Any, dict[Path, Located]]:
    """Parse YAML text into data plus a path -> position map; RulesError on bad syntax or past the bounds."""
    if len(text) > MAX_FILE_BYTES:
        raise RulesError([f"{filename}:1:1: rules file is too large ({len(text)} characters; "
                          f"the limit is {MAX_FILE_BYTES})"])
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except _Refused as exc:
        where = Pos.of(exc.problem_mark) if exc.problem_mark else Pos(1, 1)
        raise RulesError([f"{filename}:{where.line}:{where.col}: {exc.problem}"]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Pos.of(mark) if mark else Pos(1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.context_mark and exc.problem_mark:
            start = Pos.of(exc.context_mark)
            problem += f" ({exc.context} started at {start.line}:{start.col})"
        raise RulesError([f"{filename}:{where.line}:{where.col}: YAML syntax error: {problem}"]) from None
    except yaml.YAMLError as exc:
        raise RulesError([f"{filename}:1:1: YAML syntax error: {exc}"]) from None
    if node is None:
        return None, {(): Located(None, Pos(1, 1))}
    positions: dict[Path, Located] = {}
    errors: list[str] = []
    data = _build(loader, node, (), None, positions, errors, filename)
    loader.dispose()
    if errors:
        raise RulesError(errors)
    return data, positions


def _build(
    loader: _Loader,
    node: yaml.Node,
    path: Path,
    key_pos: Pos | None,
    positions: dict[Path, Located],
    errors: list[str],
    filename: str,
) -> Any:
    positions[path] = Located(key_pos, Pos.of(node.start_mark))
    if not isinstance(node, yaml.ScalarNode) and node.tag not in _COLLECTION_TAGS:
        where = Pos.of(node.start_mark)
        errors.append(f"{filename}:{where.line}:{where.col}: unsupported YAML tag {node.tag}")
        return None
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            kpos = Pos.of(key_node.start_mark)
            if not isinstance(key_node, yaml.ScalarNode):
                errors.append(f"{filename}:{kpos.line}:{kpos.col}: expected a plain key, found a "
                              f"{'list' if isinstance(key_node, yaml.SequenceNode) else 'mapping'}")
                continue
            key = str(key_node.value)
            if key_node.tag == "tag:yaml.org,2002:merge":
                errors.append(f"{filename}:{kpos.line}:{kpos.col}: merge keys (<<) are not allowed in rules files; "
                              "write the keys out")
                continue
            if key in result:
                errors.append(f"{filename}:{kpos.line}:{kpos.col}: duplicate key '{key}'")
                continue
            result[key] = _build(loader, value_node, (*path, key), kpos, positions, errors, filename)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(loader, item, (*path, i), None, positions, errors, filename)
            for i, item in enumerate(node.value)
        ]
    try:
        return loader.construct_object(node)
    except yaml.constructor.ConstructorError as exc:
        where = Pos.of(node.start_mark)
        errors.append(f"{filename}:{where.line}:{where.col}: {exc.problem}")
        return None
