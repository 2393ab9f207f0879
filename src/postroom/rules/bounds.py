"""Limits that keep reading, validating and running a rules file cheap, whoever wrote it.

Rules files come from tenant admins and over the HTTP API, and they are read
inside the serving process, so every cost must be bounded by the file's size:
the YAML (size, nesting, node count, no anchors or aliases), the number of
rules, and each regular expression, both what compiling it may allocate and
how long matching it may run.
"""

from __future__ import annotations

from typing import Any

import regex
from regex import _regex_core

MAX_FILE_BYTES = 256 * 1024
MAX_DEPTH = 32
MAX_NODES = 50_000
MAX_RULES = 1000
MAX_PATTERN_LENGTH = 1000
# Compiling expands counted repeats: ``(?:a{1000}){1000}`` allocates a million nodes. Costs count such nodes.
MAX_PATTERN_COST = 10_000
MAX_FILE_PATTERN_COST = 100_000
# A ``matches`` test looks at this many characters of each value; ``contains`` and the others see all of it.
MAX_REGEX_INPUT = 256 * 1024
FLAGS = regex.VERSION0


def pattern_cost(pattern: str) -> int:
    """How many nodes compiling ``pattern`` creates, counting each counted repeat's minimum as copies.

    Uses the regex module's own parser (no expansion happens there), so verbose
    mode, nested sets and escapes are read exactly as the compiler reads them.
    """
    flags = FLAGS
    while True:
        source = _regex_core.Source(pattern)
        info = _regex_core.Info(flags, source.char_type, {})
        source.ignore_space = bool(info.flags & regex.VERBOSE)
        try:
            return _cost(_regex_core._parse_pattern(source, info))
        except _regex_core._UnscopedFlagSet:
            flags = info.global_flags


def _cost(node: Any) -> int:
    inner = sum(_cost(child) for child in _children(node))
    if isinstance(node, _regex_core.GreedyRepeat):
        return 1 + inner * max(node.min_count, 1)
    return 1 + inner


def _children(node: Any) -> list[Any]:
    fields = node.__dict__.values() if hasattr(node, "__dict__") else ()
    found = []
    for value in fields:
        if isinstance(value, _regex_core.RegexBase):
            found.append(value)
        elif isinstance(value, list | tuple):
            found.extend(v for v in value if isinstance(v, _regex_core.RegexBase))
    return found
