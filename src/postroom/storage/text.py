"""Text a stranger wrote, made storable before it goes into a text or JSON column.

Both databases refuse some strings a parser can hand over: lone surrogates
(the ``surrogateescape`` form of raw 8-bit header bytes) cannot be encoded as
UTF-8, and PostgreSQL's text and JSON types cannot hold NUL. One such value
used to fail a message's final write and then the error handler's write of
the same value, leaving the row running forever. Every value is scanned once
and returned unchanged (the same object) when it is already storable.
"""

from __future__ import annotations

import dataclasses
import operator
import re
from datetime import datetime
from typing import TypeVar

T = TypeVar("T")
ERROR_LIMIT = 4000  # characters of an error text kept on a row
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: str, limit: int | None = None) -> str:
    """``value`` with NUL and lone surrogates as U+FFFD (raw 8-bit bytes each become one), cut to ``limit``."""
    if limit is not None and len(value) > limit:
        value = value[:limit]
    if value.isascii() and "\x00" not in value:  # isascii is a flag lookup, not a scan
        return value
    return _UNSTORABLE.sub("\ufffd", value)


def storable_json(value: T) -> T:
    """Strings anywhere in a JSON-shaped value (dict keys too) made storable; the same object when nothing changes."""
    if isinstance(value, str):
        return storable(value)  # type: ignore[return-value]
    if isinstance(value, dict):
        items = [(storable_json(k), storable_json(v)) for k, v in value.items()]
        if all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(items, value.items(), strict=True)):
            return value
        return dict(items)  # type: ignore[return-value]
    if isinstance(value, list | tuple):
        seq = [storable_json(v) for v in value]
        if all(v is v0 for v, v0 in zip(seq, value, strict=True)):
            return value
        return type(value)(seq)  # type: ignore[return-value]
    return value


def storable_fields(value: T) -> T:
    """A frozen dataclass tree (a ParsedMessage) with every string in it made storable; bytes stay as they are.

    Applied once to what the parser returns, so every column the pipeline
    fills from it (the inbound row, messages, conversations, contacts and
    their JSON) receives storable text, whichever stage writes it.
    """
    kind = type(value)
    if kind is str:
        return storable(value)  # type: ignore[return-value]
    if kind in _UNCHANGED:
        return value
    if kind is tuple or kind is list:
        return _storable_items(value)  # type: ignore[arg-type]
    if isinstance(value, str):
        return storable(value)  # type: ignore[return-value]
    names = _FIELD_NAMES.get(kind)
    if names is None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = _FIELD_NAMES[kind] = tuple(f.name for f in dataclasses.fields(value))
    if names is not None:
        return _storable_dataclass(value, names)
    if isinstance(value, list | tuple):
        return _storable_items(value)  # type: ignore[return-value]
    if isinstance(value, dict):
        return storable_json(value)
    return value


def _storable_dataclass(value: T, names: tuple[str, ...]) -> T:
    """The same object when no field changes, else a copy with the changed fields."""
    changes = {}
    for name in names:
        old = getattr(value, name)
        new = storable_fields(old)
        if new is not old:
            changes[name] = new
    return dataclasses.replace(value, **changes) if changes else value  # type: ignore[type-var]


def _storable_items(value: list | tuple) -> list | tuple:
    """The same sequence when no item changes (the usual case), else a new one of its type."""
    seq = [storable(v) if type(v) is str else storable_fields(v) for v in value]
    if all(map(operator.is_, seq, value)):
        return value
    return type(value)(seq)


#: Values with no text in them, checked first: most fields of a ParsedMessage are these or plain strings.
_UNCHANGED = frozenset({int, float, bool, bytes, type(None), datetime})
#: Field names per dataclass: ``dataclasses.fields`` rebuilds its tuple on every call.
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
