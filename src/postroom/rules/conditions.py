"""Named predicates over a RuleInput, the operators that test them, and condition trees.

A predicate is registered with ``@predicate(name, kind)``; its kind decides
which operators the schema accepts for it, so adding a field to the rules
language is one decorated function here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import regex

from postroom.rules.bounds import FLAGS, MAX_PATTERN_COST, MAX_PATTERN_LENGTH, MAX_REGEX_INPUT, pattern_cost
from postroom.rules.input import RuleInput


class Kind(StrEnum):
    ADDRESS = "address"
    TEXT = "text"
    NUMBER = "number"
    FLAG = "flag"
    HEADER = "header"
    CONTACT = "contact"


@dataclass(frozen=True)
class Predicate:
    name: str
    kind: Kind
    extract: Callable[[RuleInput, str | None], Any]
    doc: str


PREDICATES: dict[str, Predicate] = {}


def predicate(name: str, kind: Kind) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register an extractor: text kinds return a tuple of strings (any may match), numbers an int."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        PREDICATES[name] = Predicate(name, kind, fn, " ".join((fn.__doc__ or "").split()))
        return fn

    return register


def _one(value: str | None) -> tuple[str, ...]:
    return (value,) if value else ()


@predicate("from", Kind.ADDRESS)
def _from(i: RuleInput, _: str | None) -> tuple[str, ...]:
    """Address in the From header."""
    return _one(i.from_address)


@predicate("from_name", Kind.TEXT)
def _from_name(i: RuleInput, _: str | None) -> tuple[str, ...]:
    """Display name in the From header."""
    return _one(i.from_name)


@predicate("envelope_from", Kind.ADDRESS)
def _envelope_from(i: RuleInput, _: str | None) -> tuple[str, ...]:
    """SMTP MAIL FROM (empty for bounces)."""
    return _one(i.envelope_from)


@predicate("reply_to", Kind.ADDRESS)
def _reply_to(i: RuleInput, _: str | None) -> tuple[str, ...]:
    """Addresses in Reply-To."""
    return i.reply_to


@predicate("to", Kind.ADDRESS)
def _to(i: RuleInput, _: str | None) -> tuple[str, ...]:
    """Addresses in the To header."""
    return i.to


@predicate("cc", Kind.ADDRESS)
def _cc(i: RuleInput, _: str | None) -> tuple[str, ...]:
    """Addresses in the Cc header."""
    return i.cc


@predicate("recipient", Kind.ADDRESS)
def _recipient(i: RuleInput, _: str | None) -> tuple[str, ...]:
    """The tenant address(es) the message arrived at (SMTP RCPT TO)."""
    return i.recipients


@predicate("any_recipient", Kind.ADDRESS)
def _any_recipient(i: RuleInput, _: str | None) -> tuple[str, ...]:
    """To, Cc and RCPT TO together."""
    return tuple(dict.fromkeys((*i.to, *i.cc, *i.recipients)))


@predicate("subject", Kind.TEXT)
def _subject(i: RuleInput, _: str | None) -> tuple[str, ...]:
    """Subject line."""
    return _one(i.subject)


@predicate("reply_text", Kind.TEXT)
def _reply_text(i: RuleInput, _: str | None) -> tuple[str, ...]:
    """New text of the message, without quoted history and signature."""
    return _one(i.reply_text)


@predicate("body", Kind.TEXT)
def _body(i: RuleInput, _: str | None) -> tuple[str, ...]:
    """Full plain-text body."""
    return _one(i.body)


@predicate("header", Kind.HEADER)
def _header(i: RuleInput, name: str | None) -> tuple[str, ...]:
    """Every value of the header given by ``name``."""
    return i.header_values(name or "")


@predicate("attachment_name", Kind.TEXT)
def _attachment_name(i: RuleInput, _: str | None) -> tuple[str, ...]:
    """File names of attachments."""
    return i.attachment_names


@predicate("attachment_type", Kind.TEXT)
def _attachment_type(i: RuleInput, _: str | None) -> tuple[str, ...]:
    """Declared and detected MIME types of attachments."""
    return i.attachment_types


@predicate("attachment_count", Kind.NUMBER)
def _attachment_count(i: RuleInput, _: str | None) -> int:
    """Number of attachments, inline ones included."""
    return i.attachment_count


@predicate("size", Kind.NUMBER)
def _size(i: RuleInput, _: str | None) -> int:
    """Message size in bytes."""
    return i.size


@predicate("spf", Kind.TEXT)
def _spf(i: RuleInput, _: str | None) -> tuple[str, ...]:
    """SPF results from Authentication-Results (pass, fail, softfail, none...)."""
    return i.spf


@predicate("dkim", Kind.TEXT)
def _dkim(i: RuleInput, _: str | None) -> tuple[str, ...]:
    """DKIM results, one per signature."""
    return i.dkim


@predicate("dmarc", Kind.TEXT)
def _dmarc(i: RuleInput, _: str | None) -> tuple[str, ...]:
    """DMARC results."""
    return i.dmarc


@predicate("language", Kind.TEXT)
def _language(i: RuleInput, _: str | None) -> tuple[str, ...]:
    """Detected language code, when known."""
    return _one(i.language)


@predicate("contact", Kind.CONTACT)
def _contact(i: RuleInput, attribute: str | None) -> tuple[str, ...]:
    """An attribute of the known contact (``attribute``)."""
    return _one(i.contact.get(attribute or ""))


def _flag(name: str, doc: str) -> None:
    def extract(i: RuleInput, _: str | None) -> bool:
        return bool(getattr(i, name))

    extract.__doc__ = doc
    predicate(name, Kind.FLAG)(extract)


for _name, _doc in (
    ("is_forward", "The message forwards another one."),
    ("is_auto_reply", "Out-of-office or other automatic reply."),
    ("is_bounce", "Delivery status notification."),
    ("is_mailing_list", "Mailing list or newsletter (List-Id, List-Unsubscribe, Precedence: list/bulk)."),
    ("is_reply", "Threading matched an existing conversation."),
    ("new_conversation", "A new conversation would be created."),
):
    _flag(_name, _doc)


Slot = tuple[str, str, str | None]


class Facts(dict[Slot, Any]):
    """Per-message cache of extracted values, so 500 rules lower-case the body once.

    A dict keyed by ``(view, predicate, param)``: hits are a C-level lookup,
    misses are filled by ``__missing__``. Also carries this message's regex
    time budget and any warnings.
    """

    __slots__ = ("input", "deadline", "per_match", "warnings")

    def __init__(self, inp: RuleInput, *, regex_budget: float, regex_timeout: float) -> None:
        super().__init__()
        self.input = inp
        self.deadline = time.monotonic() + regex_budget
        self.per_match = regex_timeout
        self.warnings: list[str] = []

    def __missing__(self, slot: Slot) -> Any:
        view, name, param = slot
        if view == "raw":
            value = PREDICATES[name].extract(self.input, param)
        elif view == "lower":
            value = tuple(v.lower() for v in self[("raw", name, param)])
        else:
            value = tuple(v.rpartition("@")[2] for v in self[("lower", name, param)])
        self[slot] = value
        return value


Test = Callable[[Facts], bool]
# An operator builds a test from its operand and the slot holding the values it needs.
OPERATORS: dict[str, tuple[str, Callable[[Any, Slot], Test]]] = {}


def operator(name: str, view: str) -> Callable[[Callable[[Any, Slot], Test]], Any]:
    """Register an operator; ``view`` is raw, lower (lower-cased strings) or domain."""

    def register(build: Callable[[Any, Slot], Test]) -> Callable[[Any, Slot], Test]:
        OPERATORS[name] = (view, build)
        return build

    return register


@operator("is", "lower")
def _is(operand: str | int, slot: Slot) -> Test:
    if isinstance(operand, int):
        return lambda f: f[slot] == operand
    needle = operand.lower()
    return lambda f: needle in f[slot]


@operator("in", "lower")
def _in(operand: list[str] | list[int], slot: Slot) -> Test:
    wanted = frozenset(v.lower() if isinstance(v, str) else v for v in operand)
    if all(isinstance(v, int) for v in operand):
        return lambda f: f[slot] in wanted
    return lambda f: not wanted.isdisjoint(f[slot])


@operator("contains", "lower")
def _contains(operand: list[str], slot: Slot) -> Test:
    needles = tuple(v.lower() for v in operand)
    if len(needles) == 1:
        (needle,) = needles
        return lambda f: any(needle in v for v in f[slot])
    return lambda f: any(n in v for v in f[slot] for n in needles)


@operator("starts_with", "lower")
def _starts_with(operand: list[str], slot: Slot) -> Test:
    prefixes = tuple(v.lower() for v in operand)
    return lambda f: any(v.startswith(prefixes) for v in f[slot])


@operator("ends_with", "lower")
def _ends_with(operand: list[str], slot: Slot) -> Test:
    suffixes = tuple(v.lower() for v in operand)
    return lambda f: any(v.endswith(suffixes) for v in f[slot])


@operator("domain", "domain")
def _domain(operand: list[str], slot: Slot) -> Test:
    """Exact domain or any subdomain of it."""
    exact = frozenset(d.lower().lstrip("@.") for d in operand)
    subs = tuple("." + d for d in exact)
    return lambda f: any(v in exact or v.endswith(subs) for v in f[slot])


@operator("exists", "raw")
def _exists(operand: bool, slot: Slot) -> Test:
    return lambda f: bool(f[slot]) is operand


@operator("matches", "raw")
def _matches(operand: str, slot: Slot) -> Test:
    """Search the first MAX_REGEX_INPUT characters of each value, with a timeout bounded by the message's
    remaining regex budget: backtracking cost grows with the input, so both are bounded."""
    pattern = compile_regex(operand)

    def test(f: Facts) -> bool:
        for value in f[slot]:
            remaining = f.deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("regex budget for this message used up")
            if pattern.search(value, 0, MAX_REGEX_INPUT, timeout=min(f.per_match, remaining)):
                return True
        return False

    return test


@operator("gt", "raw")
def _gt(operand: int, slot: Slot) -> Test:
    return lambda f: f[slot] > operand


@operator("lt", "raw")
def _lt(operand: int, slot: Slot) -> Test:
    return lambda f: f[slot] < operand


@operator("flag", "raw")
def _flag_is(operand: bool, slot: Slot) -> Test:
    return lambda f: f[slot] is operand


def compile_regex(pattern: str) -> regex.Pattern[str]:
    """Compile with the ``regex`` engine, whose matching takes a timeout, once the pattern is known to compile
    small: counted repeats are expanded by the compiler, so ``a{4294967294}`` would exhaust memory."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise regex.error(f"pattern is {len(pattern)} characters long; the limit is {MAX_PATTERN_LENGTH}")
    try:
        cost = pattern_cost(pattern)
    except ValueError as exc:
        raise regex.error(str(exc)) from None
    if cost > MAX_PATTERN_COST:
        raise regex.error(f"pattern is too large once its counted repeats {{n}} are expanded ({cost} nodes; "
                          f"the limit is {MAX_PATTERN_COST}); use open repeats like {{n,}} or + instead")
    return regex.compile(pattern, FLAGS)
