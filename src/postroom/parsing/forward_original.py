"""The original message's fields from a forwarded block: ``email-forward-parser``'s ``parse_original_email``,
step for step, running only the regexes that can match.

The library tries every regex of a list (a few dozen per field, one per client and language) on every text,
and several fields are looked for in the block and in the body both, which made this most of the forward
reader's CPU. A regex here runs only when the longest literal text every match of it contains (its *needle*,
read from the pattern's parse tree) occurs in the text searched; skipping the others changes no result,
since they cannot match. The library is pinned (pyproject.toml) because these functions mirror its own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from emailforwardparser import loop, regexs, utils
from emailforwardparser.forward_parser import MailboxResult, OriginalMetadata

#: A regex list with each regex's needle (None: the regex always runs).
Table = tuple[tuple[re.Pattern[str], str | None], ...]


def needle(rx: re.Pattern[str]) -> str | None:
    """The longest literal text every match of ``rx`` contains, from its parse tree; None when there is
    none (or the pattern ignores case, or the tree cannot be read): then the regex always runs."""
    if rx.flags & re.IGNORECASE:
        return None
    try:
        sre = re._parser  # type: ignore[attr-defined]
        best = run = ""
        for op, arg in _flattened(sre, sre.parse(rx.pattern, rx.flags)):
            if op is sre.LITERAL:
                run += chr(arg)
            elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT) and arg[0] >= 1 and len(arg[2]) == 1 \
                    and arg[2][0][0] is sre.LITERAL:
                repeated = chr(arg[2][0][1]) * arg[0]  # at least min copies, adjoining what comes before/after
                best, run = max(best, run + repeated, key=len), repeated
            else:
                best, run = max(best, run, key=len), ""
    except Exception:  # a private module of the standard library: if it changes, lose only the shortcut
        return None
    return max(best, run, key=len) or None


def _flattened(sre, items):
    """The pattern's items with plain groups opened: a group's match is its items' matches in a row. A group
    that changes flags stays one opaque item."""
    for op, arg in items:
        if op is sre.SUBPATTERN and not arg[1] and not arg[2]:
            yield from _flattened(sre, arg[3])
        else:
            yield op, arg


def table(regexes: Sequence[re.Pattern[str]]) -> Table:
    return tuple((rx, needle(rx)) for rx in regexes)


def possible(regexes: Table, text: str) -> list[re.Pattern[str]]:
    """The regexes of ``regexes`` that can match in ``text``, in their order."""
    return [rx for rx, literal in regexes if literal is None or literal in text]


_SUBJECT, _SUBJECT_LAX = table(regexs.ORIGINAL_SUBJECT), table(regexs.ORIGINAL_SUBJECT_LAX)
_FROM, _FROM_LAX = table(regexs.ORIGINAL_FROM), table(regexs.ORIGINAL_FROM_LAX)
_TO, _TO_LAX = table(regexs.ORIGINAL_TO), table(regexs.ORIGINAL_TO_LAX)
_CC, _CC_LAX = table(regexs.ORIGINAL_CC), table(regexs.ORIGINAL_CC_LAX)
_DATE, _DATE_LAX = table(regexs.ORIGINAL_DATE), table(regexs.ORIGINAL_DATE_LAX)
_REPLY_TO = table(regexs.ORIGINAL_REPLY_TO)
_WITH_INFORMATION = table(regexs.SEPARATOR_WITH_INFORMATION)
_MAILBOX, _MAILBOX_ADDRESS = table(regexs.MAILBOX), table(regexs.MAILBOX_ADDRESS)


def _match(regexes: Table, text: str) -> tuple[list[str], re.Pattern[str] | None]:
    return loop.loop_regexes_match(possible(regexes, text), text)


def _split(regexes: Table, text: str) -> list[str]:
    return loop.loop_regexes_split(possible(regexes, text), text, True)


def _replace(regexes: Table, text: str) -> str:
    return loop.loop_regexes_replace(possible(regexes, text), text)


def parse_original_email(text: str, body: str) -> OriginalMetadata:
    """``forward_parser.parse_original_email``."""
    text = regexs.BYTE_ORDER_MARK.sub("", text)
    text = regexs.QUOTE_LINE_BREAK_OPTIONAL.sub("", text)
    text = regexs.QUOTE_LINE_BREAK.sub("", text)
    text = regexs.QUOTE.sub("", text)
    text = regexs.FOUR_SPACES.sub("", text)
    return OriginalMetadata(
        body=_original_body(text),
        from_=_original_from(text, body),
        to=_original_to(text, body),
        cc=_original_cc(text, body),
        subject=_original_subject(text),
        date=_original_date(text, body),
    )


def _original_body(text: str) -> str:
    for regexes in (_SUBJECT, _CC, _TO, _REPLY_TO):
        match = _split(regexes, text)
        if len(match) > 3 and match[3].startswith("\n\n"):
            return match[3].strip()
    match = _split(_SUBJECT + _SUBJECT_LAX, text)
    if len(match) > 3:
        return match[3].strip()
    return text.strip()


def _first_with_address(in_text: list[MailboxResult], in_body: list[MailboxResult]) -> list[MailboxResult]:
    """The block's mailboxes, or the body's when the block's first has no address and the body's has one."""
    if not in_text:
        return in_body
    if not in_text[0].address:
        return in_body if in_body and in_body[0].address else in_text
    return in_text


def _original_from(text: str, body: str) -> MailboxResult:
    authors = _first_with_address(_mailboxes(_FROM, text), _mailboxes(_FROM, body))
    if authors and (authors[0].name or authors[0].address):
        return authors[0]
    match, pattern = _match(_WITH_INFORMATION, body)
    if len(match) == 4 and pattern is not None:
        named = utils.find_named_matches(pattern, body)
        return _mailbox(named.get("from_name", ""), named.get("from_address", ""))
    match, _ = _match(_FROM_LAX, text)
    if len(match) > 1:
        return _mailbox(match[2], match[3])
    return MailboxResult()


def _original_to(text: str, body: str) -> list[MailboxResult]:
    recipients = _first_with_address(_mailboxes(_TO, text), _mailboxes(_TO, body))
    if recipients:
        return recipients
    text = _replace(_SUBJECT_LAX, text)
    text = _replace(_DATE_LAX, text)
    text = _replace(_CC_LAX, text)
    return _mailboxes(_TO_LAX, text)


def _original_cc(text: str, body: str) -> list[MailboxResult]:
    recipients = _mailboxes(_CC, text) or _mailboxes(_CC, body)
    if recipients:
        return recipients
    text = _replace(_SUBJECT_LAX, text)
    text = _replace(_DATE_LAX, text)
    return _mailboxes(_CC_LAX, text)


def _original_subject(text: str) -> str:
    for regexes in (_SUBJECT, _SUBJECT_LAX):
        match, _ = _match(regexes, text)
        if match:
            return match[1].strip()
    return ""


def _original_date(text: str, body: str) -> str:
    match = _match(_DATE, text)[0] or _match(_DATE, body)[0]
    if match:
        return match[1].strip()
    match, pattern = _match(_WITH_INFORMATION, body)
    if len(match) == 4 and pattern is not None:
        return utils.find_named_matches(pattern, body).get("date", "").strip()
    text = _replace(_SUBJECT_LAX, text)
    match, _ = _match(_DATE_LAX, text)
    if match:
        return match[1].strip()
    return ""


def _mailboxes(regexes: Table, text: str) -> list[MailboxResult]:
    """``forward_parser.parse_mailbox``: the mailboxes on the line the first (earliest) regex matches."""
    match, _ = _match(regexes, text)
    line = match[-1].strip() if match else ""
    mailboxes = []
    while line:
        found, _ = _match(_MAILBOX, line)
        if not found:
            mailboxes.append(_mailbox("", line))
            break
        name, address = (found[1], found[2]) if len(found) == 3 else ("", found[1])
        mailboxes.append(_mailbox(name, address))
        line = line.replace(found[0], "", 1).strip()
        if line and line[0] in regexs.MAILBOX_SEPARATORS:
            line = line[1:].strip()
    return mailboxes


def _mailbox(name: str, address: str) -> MailboxResult:
    """``forward_parser.prepare_mailbox``."""
    name = name.strip()
    address = address.strip()
    match, _ = _match(_MAILBOX_ADDRESS, address)
    if not match:
        name = address
        address = ""
    if address == name:
        name = ""
    return MailboxResult(name.strip(), address.strip())
