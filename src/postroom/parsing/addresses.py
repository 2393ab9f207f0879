"""Address lists -> Address tuples, with flanker, as well as possible.

Most headers are plain ``Name <a@b.c>`` / ``"Last, First" <a@b.c>`` /
``a@b.c`` lists: one anchored regex reads those (flanker's ply parser costs
several times more per header; bench/RESULTS.md). Anything else (comments, groups, route addresses,
odd quoting, no dot in the domain) goes to flanker, which parses RFC 5322
lists well but gives up on a whole list when one member is broken (and logs
every lexer error through ply). So a list is tried whole first, then member
by member, then with the standard library, then with a plain addr-spec
pattern; the result is never an exception.
"""

from __future__ import annotations

import email.utils
import logging
import re

from flanker.addresslib import address as _flanker

from postroom.model import Address
from postroom.parsing.limits import MAX_ADDRESS_LIST

# flanker's ply lexer/parser log every bad address (the lexer forces INFO on import).
for _name in ("flanker.addresslib._parser.lexer", "flanker.addresslib._parser.parser", "flanker"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)

_ADDR_SPEC = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*")
_DOT_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_DOMAIN = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
#: One well-formed mailbox and its list separator; a list is a run of these or goes to flanker. A bare
#: address may carry a plain comment, as MTAs write "MAILER-DAEMON@host (Mail Delivery System)": the
#: comment is the display name then (RFC 822's old form, still written by MTAs and old clients).
_SIMPLE_MAILBOX = re.compile(
    rf'[ \t]*(?:(?:"(?P<quoted>(?:[^"\\\r\n]|\\.)*)"|(?P<plain>[\w.\'!#$%&*+/=?^`{{|}}~ -]*?))[ \t]*'
    rf'<(?P<angle>{_DOT_ATOM}@{_DOMAIN})>|(?P<bare>{_DOT_ATOM}@{_DOMAIN})(?:[ \t]*\((?P<comment>[\w .\'-]*)\))?)'
    r'[ \t]*(?:,|$)'
)
_DEBRIS = re.compile(r"[<>@;]")
_GROUP_LABEL = re.compile(r'^[^"<>@,]*:(?!//)')


def parse_list(value: str | None) -> tuple[Address, ...]:
    """Every mailbox found in an address header (decoded text), de-duplicated."""
    if not value or not value.strip():
        return ()
    value = value[:MAX_ADDRESS_LIST]
    if "@" not in value:
        return ()  # no mailbox without an "@" ("undisclosed-recipients:;"): spare flanker's parser
    found = _simple_list(value)
    if found is None:
        found = _flanker_list(value)
    if found is None:
        found = [a for piece in split_list(value) for a in _one(piece)]
    return tuple(dict.fromkeys(found))


def parse_one(value: str | None) -> Address | None:
    found = parse_list(value)
    return found[0] if found else None


def _simple_list(value: str) -> list[Address] | None:
    """The mailboxes of a plain list, or None when any member needs the real parser."""
    found: list[Address] = []
    pos, end = 0, len(value.rstrip())
    while pos < end:
        m = _SIMPLE_MAILBOX.match(value, pos)
        if m is None or m.end() == pos:
            return None
        if m["bare"]:
            found.append(Address(name=_clean_name(m["comment"] or ""), address=m["bare"].lower()))
        else:
            name = m["plain"] if m["quoted"] is None else m["quoted"]
            found.append(Address(name=_clean_name(name), address=m["angle"].lower()))
        pos = m.end()
    return found or None


def _flanker_list(value: str) -> list[Address] | None:
    try:
        parsed, bad = _flanker.parse_list(value, as_tuple=True)
    except Exception:  # flanker raises assorted internal errors on odd input
        return None
    if bad or not parsed:
        return None
    return [a for a in (_from_flanker(p) for p in parsed) if a]


def _from_flanker(parsed) -> Address | None:
    addr = getattr(parsed, "address", None)
    if not addr or "@" not in addr:
        return None
    return Address(name=_clean_name(getattr(parsed, "display_name", "") or ""), address=addr.lower())


def _one(piece: str) -> list[Address]:
    try:
        parsed = _flanker.parse(piece)
    except Exception:
        parsed = None
    if parsed is not None and (got := _from_flanker(parsed)):
        return [got]
    name, addr = email.utils.parseaddr(piece)
    if addr and _ADDR_SPEC.fullmatch(addr):
        return [Address(name=_clean_name(name), address=addr.lower())]
    specs = addr_specs(piece)
    if not specs:
        return []
    label = _clean_name(piece.split("<", 1)[0]) if "<" in piece else ""
    return [Address(name=label if i == 0 else "", address=s.lower().strip(".")) for i, s in enumerate(specs)]


_LOCAL_RUN = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~\-]+")


def addr_specs(text: str) -> list[str]:
    """``_ADDR_SPEC.findall(text)`` in linear time: the regex alone tries every position of a long
    run of local-part characters without an ``@`` after it, scanning the run again each time. A match
    can only start where such a run starts, when ``@`` follows the run."""
    found: list[str] = []
    pos = 0
    while (run := _LOCAL_RUN.search(text, pos)) is not None:
        if text.startswith("@", run.end()) and (spec := _ADDR_SPEC.match(text, run.start())):
            found.append(spec.group(0))
            pos = spec.end()
        else:
            pos = run.end() + 1
    return found


def _clean_name(name: str) -> str:
    """The display name unquoted; debris of a broken list is no name at all."""
    name = " ".join(name.split()).strip().strip("\"'").strip().replace('\\"', '"')
    return "" if _DEBRIS.search(name) else name


#: Quotes, angle brackets, comments and separators: the characters :func:`split_list` looks at.
_LIST_SPECIALS = re.compile(r'[",;<>()]')
#: Where :func:`split_list` is in a list: (inside quotes, inside angle brackets, comment depth).
_ListState = tuple[bool, bool, int]
_OUTSIDE: _ListState = (False, False, 0)


def _list_state(state: _ListState, ch: str, prev: str) -> _ListState:
    """The state after ``ch`` (``prev`` the character before it): an unescaped quote toggles quoting; outside
    quotes, ``<``/``>`` open and close an address and parentheses nest comments."""
    quoted, angle, depth = state
    if ch == '"' and prev != "\\":
        return not quoted, angle, depth
    if quoted:
        return state
    if ch in "<>":
        return quoted, ch == "<", depth
    if ch == "(":
        return quoted, angle, depth + 1
    if ch == ")":
        return quoted, angle, max(0, depth - 1)
    return state


def split_list(value: str) -> list[str]:
    """Split on commas/semicolons outside quotes, angle brackets and comments. Only the characters that
    can change that (:data:`_LIST_SPECIALS`) are visited."""
    pieces: list[str] = []
    start = 0
    state = _OUTSIDE
    for special in _LIST_SPECIALS.finditer(value):
        pos, ch = special.start(), special.group()
        state = _list_state(state, ch, value[pos - 1 : pos])
        if ch in ",;" and state == _OUTSIDE:
            pieces.append(value[start:pos])
            start = pos + 1
    pieces.append(value[start:])
    return [_GROUP_LABEL.sub("", p).strip() for p in pieces if p.strip()]
