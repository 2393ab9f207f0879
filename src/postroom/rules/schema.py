"""Pydantic models of the rules file, and errors that point at file:line:col.

Models mirror the YAML exactly (aliases are the YAML keys, ``extra="forbid"``)
so a pydantic error location is also a path into the YAML, which
``positions`` maps back to a line and column.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Annotated, Any

import regex
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from postroom.rules import positions
from postroom.rules.bounds import MAX_FILE_PATTERN_COST, MAX_RULES, pattern_cost
from postroom.rules.conditions import PREDICATES, Kind, compile_regex
from postroom.rules.errors import RulesError
from postroom.statuses import ConversationStatus


def _as_list(value: Any) -> Any:
    return value if isinstance(value, list) else [value]


def _scalar_text(value: Any) -> Any:
    """``is: 42`` means the text "42"; YAML typed it as a number."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)i?b?\s*$", re.IGNORECASE)


def _size(value: Any) -> Any:
    """Accept ``10MB``, ``512k``, ``2 GB`` (powers of 1024) next to plain byte counts."""
    if isinstance(value, str) and (m := _SIZE.match(value)):
        return int(float(m[1]) * 1024 ** " kmg".index(m[2].lower() or " "))
    return value


Text = Annotated[str, BeforeValidator(_scalar_text), Field(min_length=1)]
TextList = Annotated[list[Text], BeforeValidator(_as_list), Field(min_length=1)]
Size = Annotated[int, BeforeValidator(_size), Field(ge=0)]
_EMAIL = r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$"
Email = Annotated[str, Field(pattern=_EMAIL)]
_FORBID = ConfigDict(extra="forbid", populate_by_name=True)


class _Operators(BaseModel):
    """Exactly one operator per test keeps 'which condition decided' unambiguous."""

    model_config = _FORBID
    _params: typing.ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _one_operator(self) -> _Operators:
        ops = [
            type(self).model_fields[n].alias or n
            for n in self.model_fields_set if n not in self._params
        ]
        if len(ops) != 1:
            allowed = ", ".join(
                f.alias or n for n, f in type(self).model_fields.items() if n not in self._params
            )
            found = f"found {', '.join(sorted(ops))}" if ops else "found none"
            raise ValueError(f"expected exactly one operator ({allowed}); {found}")
        return self


class TextTest(_Operators):
    is_: Text | None = Field(None, alias="is")
    in_: TextList | None = Field(None, alias="in")
    contains: TextList | None = None
    starts_with: TextList | None = None
    ends_with: TextList | None = None
    matches: Text | None = None
    exists: StrictBool | None = None

    @field_validator("matches")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            compile_regex(value)
        except regex.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
        return value


class AddressTest(TextTest):
    domain: TextList | None = None


class HeaderTest(TextTest):
    _params: typing.ClassVar[frozenset[str]] = frozenset({"name"})
    name: Text


class ContactTest(TextTest):
    _params: typing.ClassVar[frozenset[str]] = frozenset({"attribute"})
    attribute: Text


class NumberTest(_Operators):
    is_: Size | None = Field(None, alias="is")
    in_: Annotated[list[Size], BeforeValidator(_as_list), Field(min_length=1)] | None = Field(None, alias="in")
    gt: Size | None = None
    lt: Size | None = None


_KIND_MODEL: dict[Kind, Any] = {
    Kind.ADDRESS: AddressTest,
    Kind.TEXT: TextTest,
    Kind.HEADER: HeaderTest,
    Kind.CONTACT: ContactTest,
    Kind.NUMBER: NumberTest,
    Kind.FLAG: StrictBool,
}


def _one_condition(self: BaseModel) -> BaseModel:
    keys = [type(self).model_fields[n].alias or n for n in self.model_fields_set]
    if len(keys) != 1:
        found = f"found {', '.join(sorted(keys))}" if keys else "found none"
        raise ValueError(
            f"expected exactly one condition per item (use 'all:' or 'any:' to combine); {found}"
        )
    if getattr(self, next(iter(self.model_fields_set))) is None:
        raise ValueError(f"'{keys[0]}' needs a value")
    return self


Condition: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "Condition",
    __config__=_FORBID,
    __validators__={"_one": model_validator(mode="after")(_one_condition)},
    all_=(list["Condition"] | None, Field(None, alias="all", min_length=1)),
    any_=(list["Condition"] | None, Field(None, alias="any", min_length=1)),
    not_=(typing.Optional["Condition"], Field(None, alias="not")),  # noqa: UP045 - forward ref
    **{f"{name}_": (_KIND_MODEL[p.kind] | None, Field(None, alias=name)) for name, p in PREDICATES.items()},
)
Condition.model_rebuild(_types_namespace={"Condition": Condition})


class AssignModel(BaseModel):
    model_config = _FORBID
    user: Email | None = None
    team: Text | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> AssignModel:
        if (self.user is None) == (self.team is None):
            raise ValueError("expected exactly one of 'user' (an e-mail address) or 'team' (a team name)")
        return self


def _reject_text(value: Any) -> Any:
    return {"text": value} if isinstance(value, str) else value


class RejectModel(BaseModel):
    model_config = _FORBID
    code: int = Field(550, ge=500, le=599)
    enhanced: Annotated[str, Field(pattern=r"^5\.\d{1,3}\.\d{1,3}$")] = "5.7.1"
    text: Annotated[str, Field(pattern=r"^[\x20-\x7e]+$", max_length=200)]


class Then(BaseModel):
    model_config = _FORBID
    category: Text | None = None
    assign: AssignModel | None = None
    status: ConversationStatus | None = None
    tags: TextList | None = None
    unit: Text | None = None
    auto_reply: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")] | None = None
    reject: Annotated[RejectModel, BeforeValidator(_reject_text)] | None = None
    discard: StrictBool | None = None
    forward: Annotated[list[Email], BeforeValidator(_as_list), Field(min_length=1)] | None = None
    stop: StrictBool | None = None

    @model_validator(mode="after")
    def _sensible(self) -> Then:
        if not self.model_fields_set:
            raise ValueError("expected at least one action")
        if self.reject is not None and self.discard:
            raise ValueError("a rule cannot both reject and discard")
        return self


class RuleModel(BaseModel):
    model_config = _FORBID
    name: Text
    description: str | None = None
    enabled: StrictBool = True
    when: Condition | None = None  # type: ignore[valid-type]
    then: Then


class RulesFile(BaseModel):
    model_config = _FORBID
    rules: list[RuleModel] = Field(max_length=MAX_RULES)


_BOUNDS = {"greater_than_equal": ">=", "less_than_equal": "<=", "greater_than": ">", "less_than": "<"}
_FRIENDLY = {
    "string_type": "expected text",
    "bool_type": "expected true or false",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number (sizes may use KB, MB, GB)",
    "int_from_float": "expected a whole number",
    "list_type": "expected a list",
    "model_type": "expected a mapping (key: value lines)",
    "model_attributes_type": "expected a mapping (key: value lines)",
    "dict_type": "expected a mapping (key: value lines)",
    "string_too_short": "expected non-empty text",
    "too_short": "expected a non-empty list",
    "too_long": f"too many items (a rules file holds at most {MAX_RULES} rules)",
}


def validate(text: str, filename: str) -> tuple[RulesFile, dict[positions.Path, positions.Located]]:
    """Parse and validate; RulesError lists every problem as ``file:line:col: message``."""
    data, where = positions.load(text, filename)
    try:
        model = RulesFile.model_validate(data if data is not None else {})
    except ValidationError as exc:
        found = sorted((_describe(err, where) for err in exc.errors()), key=lambda e: (e[0].line, e[0].col))
        raise RulesError([f"{filename}:{pos.line}:{pos.col}: {message}" for pos, message in found]) from None
    _check_names(model, where, filename)
    _check_pattern_total(data, where, filename)
    return model, where


def _check_pattern_total(data: Any, where: dict[positions.Path, positions.Located], filename: str) -> None:
    """Each regex is bounded on its own; this bounds what all of a file's compiled regexes hold together."""
    total = 0
    for path, pattern in _patterns(data, ()):
        total += pattern_cost(pattern)
        if total > MAX_FILE_PATTERN_COST:
            pos = where[path].value
            raise RulesError([f"{filename}:{pos.line}:{pos.col}: the regular expressions of this file together "
                              f"are too large (limit {MAX_FILE_PATTERN_COST} nodes once repeats are expanded)"])


def _patterns(data: Any, path: positions.Path) -> list[tuple[positions.Path, str]]:
    """Every ``matches`` operand with its path; the schema has already checked the shapes."""
    found = []
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "matches" and isinstance(value, str):
                found.append(((*path, key), value))
            else:
                found.extend(_patterns(value, (*path, key)))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found.extend(_patterns(value, (*path, i)))
    return found


def _check_names(model: RulesFile, where: dict[positions.Path, positions.Located], filename: str) -> None:
    seen: dict[str, int] = {}
    errors = []
    for i, rule in enumerate(model.rules):
        if rule.name in seen:
            pos = where[("rules", i, "name")].value
            errors.append(f"{filename}:{pos.line}:{pos.col}: duplicate rule name '{rule.name}' "
                          f"(first used by rule {seen[rule.name] + 1}); names must be unique")
        seen.setdefault(rule.name, i)
    if errors:
        raise RulesError(errors)


def _describe(err: ErrorDetails, where: dict[positions.Path, positions.Located]) -> tuple[positions.Pos, str]:
    loc = tuple(err["loc"])
    path = loc
    while path and path not in where:
        path = path[:-1]
    located = where.get(path) or where[()]
    pos = located.key if err["type"] == "extra_forbidden" and located.key else located.value
    if err["type"] == "extra_forbidden":
        message = _unknown_key(loc)
    elif err["type"] == "missing":
        message = f"missing required key '{loc[-1]}'"
    elif err["type"] in ("literal_error", "enum"):
        message = f"expected one of {err.get('ctx', {}).get('expected', '')}"
    elif err["type"] in _BOUNDS:
        message = f"expected a number {_BOUNDS[err['type']]} {next(iter(err.get('ctx', {None: ''}).values()))}"
    elif err["type"] == "string_pattern_mismatch":
        message = _pattern_message(loc)
    else:
        message = _FRIENDLY.get(err["type"], err["msg"].removeprefix("Value error, "))
    if err["type"] not in ("extra_forbidden", "missing") and "input" in err and not isinstance(
        err["input"], dict | list
    ):
        message += f", got {err['input']!r}"
    return pos, f"{message} (at {_dotted(path)})"


def _pattern_message(loc: tuple[Any, ...]) -> str:
    field = next((p for p in reversed(loc) if isinstance(p, str)), "")
    return {
        "user": "expected an e-mail address",
        "forward": "expected an e-mail address",
        "enhanced": "expected an enhanced status code like 5.7.1",
        "text": "expected one line of printable ASCII",
        "auto_reply": "expected a template name (letters, digits, '.', '-', '_')",
    }.get(field, "value has the wrong format")


def _unknown_key(loc: tuple[Any, ...]) -> str:
    key = str(loc[-1])
    model = _model_at(loc[:-1])
    if model is None:
        return f"unknown key '{key}'"
    allowed = [f.alias or n for n, f in model.model_fields.items()]
    hint = difflib.get_close_matches(key, allowed, n=1)
    suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
    return f"unknown key '{key}'{suggestion} (expected one of: {', '.join(allowed)})"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """Follow a validation location through the model classes to the model that holds it."""
    model: type[BaseModel] | None = RulesFile
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        model = _find_model(field.annotation) if field else None
    return model


def _find_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, typing.ForwardRef | str):
        return Condition
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or args:
        for arg in args:
            if (found := _find_model(arg)) is not None:
                return found
    return None


def _dotted(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "top level"
