"""Reply trimming: split a body into the new reply, the quoted history and the signature.

Written here rather than wrapped. Evaluated on PyPI:
- talon: unmaintained since 2019, pins old lxml/scikit-learn, English-centric.
- email_reply_parser (GitHub's port): last release 2020, English only.
- mail-parser-reply (maintained, EN/DE/FR/NL and more): good header lists,
  but it strips every line (losing ``-- `` and indentation), treats any
  "Best regards" as a signature running to the end of the mail, has no notion
  of ``>`` quote blocks or bottom posting and returns no separate quote, so
  its output cannot fill reply_text / quoted_text / signature.
Structure decides, wording is a hint (the words come from the language table,
:mod:`postroom.parsing.lexicon`). A quote starts at an attribution line (one to three lines
with a date and/or an address, ending in a colon or an attribution verb, or followed by a
quoted block), a header block (three or more "Label: value" lines with an address or a date,
labels in any listed language or, with content above, any "Label:" shape), a forward or
"original message" separator, the HTML quote marker put in by :mod:`postroom.parsing.html`,
or a ``>`` block. Text above the quote is the reply (top posting); when nothing is above,
the unquoted text after the quoted block (``>`` or indented) is (bottom posting). The
signature is cut at ``-- ``, a delimiter line, a mobile footer, or the contact block below
a sign-off: the sign-off and the name typed under it stay in the reply.
Every check looks at a bounded window of lines, so the stage stays linear in the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from postroom.parsing import lexicon
from postroom.parsing.html import QUOTE_MARK

_RULE = re.compile(r"^\s*(?:_{5,}|-{5,}|={4,})\s*$")
_DELIMITER = re.compile(r"^\s*(?:--|__|ᐧ)\s*$")
_QUOTED = re.compile(r"^\s*>")
#: Lines that quote by a marker other than ">" (some list software and old clients use "|").
_MARKED = re.compile(r"^\s*[>|]")
_INDENTED = re.compile(r"^(?:\t| {2,})\S")
_DIGIT_OR_AT = re.compile(r"@|\d")
#: What an attribution (a date or an address: a digit or "@") or a header block (a colon) cannot do without:
#: a line with none of these is neither, so the line-by-line checks skip it.
_MAY_HEAD_QUOTE = re.compile(r"[@:：]|\d")
#: A short phrase framed by dashes ("-----Original Message-----", "---- On … wrote ----"): a separator by shape.
_FRAMED = re.compile(r"^\s*[-=_*]{2,}\s*[^-=_*\s][^-=_*]{2,80}?\s*[-=_*]{2,}\s*$")
#: Gmail's older attribution opens with an ISO date and time ("2016-03-03 17:21 GMT+01:00 Name <…>:").
_ISO_STAMP = re.compile(r"^\s*\d{4}-\d{2}-\d{2} \d{1,2}:\d{2}\b")
_CONTACT = re.compile(r"https?://|www\.|@|(?:\+|\()?\d[\d ().-]{6,}\d|\b(?:tel|phone|fax|mobile|mob|t|m|f)\s*[.:]",
                      re.I)
_MAX_ATTRIBUTION = 400
_MAX_WRAPPED = 1000
_BLOCK_WINDOW = 8


@dataclass(frozen=True)
class Trimmed:
    reply: str
    quoted: str
    signature: str


def trim(text: str) -> Trimmed:
    """Split ``text`` into reply, quoted history and signature."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    start = quote_start(lines)
    if start is None:
        reply, quoted = _split_quote_blocks(lines)
    elif _has_content(lines[:start]):
        reply, quoted = _split_quote_blocks(lines[:start])
        quoted = quoted + lines[start:]
    else:
        reply, quoted = _bottom_posted(lines, start)
    body, signature = split_signature(reply)
    if not signature and quoted:
        quoted, signature = _trailing_signature(quoted)
    if not _has_content(body) and not signature and quoted and start is None:
        body, quoted = quoted, []
    return Trimmed(_join(body), _join(_unmark(quoted)), _join(signature))


def quote_start(lines: list[str]) -> int | None:
    """Index of the first line of a client's quoted history (not ``>`` blocks)."""
    first_content = next((i for i, line in enumerate(lines) if _is_content(line)), len(lines))
    separator = lexicon.forward_separator()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or _QUOTED.match(line):
            continue
        if stripped == QUOTE_MARK or (len(line) < 200 and (separator.match(line) or _FRAMED.match(line))):
            return _back_to_rule(lines, i)
        if _MAY_HEAD_QUOTE.search(line) and (_is_attribution(lines, i) or _is_wrapped_header(lines, i)
                                             or _is_header_block(lines, i, first_content < i)):
            return _back_to_rule(lines, i)
    return None


def _next_content(lines: list[str], i: int) -> str:
    """The next non-blank line from ``i`` within a few lines ("" when none)."""
    for line in lines[i : i + 4]:
        if line.strip():
            return line
    return ""


def _opens_quote(lines: list[str], i: int, attribution: str) -> bool:
    """The block after an attribution is quoted: ``>``/``|`` marks, or indented below an unindented line."""
    following = _next_content(lines, i)
    return bool(_MARKED.match(following) or (_INDENTED.match(following) and not _INDENTED.match(attribution))
                or following.strip() == QUOTE_MARK)


def _is_attribution(lines: list[str], i: int) -> bool:
    """An attribution by its shape: one to three non-blank lines with a date and/or an address that end in a
    colon, an attribution verb or just before a quoted block. The verb (any listed language) is a hint that
    lets a colon-ended line count without a quoted block after it."""
    if lexicon.label_of(lines[i]) is not None:
        return False
    for span in (1, 2, 3):
        joined = _attribution_text(lines, i, span)
        if joined is None:
            return False
        date, address = lexicon.DATE.search(joined), lexicon.ADDRESS.search(joined)
        if not (date or address):
            continue
        tail = joined.rstrip()
        # the verb counts only for a colon at the end or with both a date and an address (see the shapes)
        verb = lexicon.wrote().search(tail[-80:]) if tail.endswith((":", "：")) or (date and address) else None
        candidate = _Attribution(joined, tail, span == 1, bool(date), bool(address), verb,
                                 _opens_quote(lines, i + span, lines[i]))
        if any(shape(candidate) for shape in _ATTRIBUTION_SHAPES):
            return True
    return False


def _attribution_text(lines: list[str], i: int, span: int) -> str | None:
    """The ``span`` lines from ``i`` joined, or None when an attribution cannot run that far: past the end, onto a
    blank or quoted line, too long, or over a first line with no digit, address or date."""
    if i + span > len(lines):
        return None
    last = lines[i + span - 1]
    if not last.strip() or _MARKED.match(last):
        return None
    joined = " ".join(ln.strip() for ln in lines[i : i + span])
    if len(joined) > _MAX_ATTRIBUTION:
        return None
    if span > 1 and not _DIGIT_OR_AT.search(lines[i]) and not lexicon.DATE.search(lines[i]):
        return None
    return joined


@dataclass(frozen=True)
class _Attribution:
    """What one to three lines with a date or an address show, for the shapes of an attribution to judge."""

    text: str
    tail: str
    one_line: bool
    date: bool
    address: bool
    #: An attribution verb within the last 80 characters.
    verb: re.Match[str] | None
    quoted_after: bool


def _ends_in_colon(c: _Attribution) -> bool:
    """A colon at the end: after an attribution verb, or of a dated (or ``…>:``) line above a quoted block."""
    return c.tail.endswith((":", "：")) and bool(c.verb or (c.quoted_after and (c.date or c.tail.endswith(">:"))))


def _ends_in_verb(c: _Attribution) -> bool:
    """A date, an address and an attribution verb right at the end ("… <a@b.example> wrote")."""
    return c.verb is not None and c.verb.end() >= len(c.tail[-80:]) - 1 and c.date and c.address


def _dated_line(c: _Attribution) -> bool:
    """A short dated line: with an address above a quoted block, ending ``>:``, or one line opening with an ISO
    stamp."""
    return c.date and len(c.text) < 200 and bool((c.quoted_after and c.address) or c.tail.endswith(">:")
                                                  or (c.one_line and _ISO_STAMP.match(c.text)))


_ATTRIBUTION_SHAPES = (_ends_in_colon, _ends_in_verb, _dated_line)


def _is_wrapped_header(lines: list[str], i: int) -> bool:
    """An attribution whose name/address got wrapped over several lines, some blank (Gmail via some relays):
    the first line holds the date, the join ends in a verb and a colon."""
    if not lexicon.DATE.search(lines[i]) or len(lines[i]) > 200 or lexicon.label_of(lines[i]) is not None:
        return False
    joined = " ".join(ln.strip() for ln in lines[i : i + 7] if ln.strip())[:_MAX_WRAPPED]
    end = joined.find(":", len(lines[i].strip()))
    while 0 < end < _MAX_ATTRIBUTION:
        head = joined[:end]
        if lexicon.wrote().search(head[-60:]) and lexicon.ADDRESS.search(head):
            return True
        end = joined.find(":", end + 1)
    return False


def _is_header_block(lines: list[str], i: int, content_above: bool) -> bool:
    """An Outlook-style block: label lines (the table's labels in any language, a From among them) with an
    address or a date; with text above it, any three "Label: value" lines with an address and a date."""
    if not (lexicon.label_of(lines[i]) or (content_above and lexicon.generic_label(lines[i]))):
        return False
    window = [ln for ln in lines[i : i + _BLOCK_WINDOW] if ln.strip()][:6]
    block = " ".join(window)
    return _known_labels(window, block) or (content_above and _generic_labels(window, block))


def _known_labels(window: list[str], block: str) -> bool:
    """A From label and two more of the table's labels, or one more with an address or a date in the block."""
    roles = {found[0] for found in (lexicon.label_of(ln) for ln in window) if found}
    evidence = bool(lexicon.ADDRESS.search(block) or lexicon.DATE.search(block))
    return "from" in roles and (len(roles) >= 3 or (len(roles) >= 2 and evidence))


def _generic_labels(window: list[str], block: str) -> bool:
    """Three or more "Label: value" lines in a row from the top, with an address and a date in the block."""
    generic = 0
    for line in window:
        if not lexicon.generic_label(line):
            break
        generic += 1
    return generic >= 3 and bool(lexicon.ADDRESS.search(block)) and bool(lexicon.DATE.search(block))


def _back_to_rule(lines: list[str], i: int) -> int:
    """Include an Outlook rule line or a date line just above the quote header."""
    start = i
    j = i - 1
    for _ in range(3):
        while j >= 0 and not lines[j].strip():
            j -= 1
        if j < 0:
            break
        label = lexicon.label_of(lines[j])
        if not (_RULE.match(lines[j]) or (label and label[0] == "sent") or lines[j].strip() == QUOTE_MARK):
            break
        start, j = j, j - 1
    return start


def _bottom_posted(lines: list[str], start: int) -> tuple[list[str], list[str]]:
    """Header at the top: the reply is what follows the quoted block (``>`` or indented lines)."""
    end = next((j for j in range(start, min(start + 7, len(lines))) if lines[j].rstrip().endswith((":", "："))),
               start)
    i = end + 1
    indented = bool(_INDENTED.match(_next_content(lines, i))) and not _INDENTED.match(lines[start])
    while i < len(lines) and (not lines[i].strip() or _QUOTED.match(lines[i])
                              or (indented and _INDENTED.match(lines[i]))):
        i += 1
    if i < len(lines) and (indented or any(_QUOTED.match(ln) for ln in lines[end:i])):
        reply, more_quoted = _split_quote_blocks(lines[i:])
        return reply, lines[start:i] + more_quoted
    return [], lines[start:]


def _split_quote_blocks(lines: list[str]) -> tuple[list[str], list[str]]:
    """Separate ``>`` lines from the rest; the line introducing a quote goes with it."""
    if not any(_QUOTED.match(ln) for ln in lines):
        return lines, []
    if not _has_content([ln for ln in lines if not _QUOTED.match(ln)]):
        return lines, []
    reply: list[str] = []
    quoted: list[str] = []
    in_quote = False
    for line in lines:
        is_quoted = bool(_QUOTED.match(line))
        if is_quoted and not in_quote:
            _move_intro(reply, quoted)
        (quoted if is_quoted else reply).append(line)
        if line.strip():
            in_quote = is_quoted
    return reply, quoted


def _move_intro(reply: list[str], quoted: list[str]) -> None:
    """A line ending in ':' right above a quote (an unknown "wrote:") belongs to the quote."""
    j = len(reply) - 1
    while j >= 0 and not reply[j].strip():
        j -= 1
    if j >= 0 and reply[j].rstrip().endswith(":") and _DIGIT_OR_AT.search(reply[j]):
        quoted.append(reply.pop(j))


def split_signature(lines: list[str]) -> tuple[list[str], list[str]]:
    """Cut the signature: ``-- ``/delimiter lines after content, a mobile footer, or a contact block."""
    for i, line in enumerate(lines):
        if len(line) < 120 and lexicon.mobile_footer().match(line):
            return lines[:i], lines[i:]
        if i > 0 and _DELIMITER.match(line) and _has_content(lines[:i]):
            return lines[:i], lines[i + 1 :] if line.strip() in ("--", "-- ") else lines[i:]
    return _split_contact_block(lines)


def _split_contact_block(lines: list[str]) -> tuple[list[str], list[str]]:
    """The contact block under a sign-off ("Kind regards,\nMaria\nSales, Acme\n+39 …"): the sign-off and the
    name typed under it stay in the reply; the short lines after them are the signature. Without a sign-off,
    a last paragraph of short lines opening with a name, two or more of them phone numbers, addresses or
    links, is."""
    content = [i for i, ln in enumerate(lines) if ln.strip()]
    sign_off = _sign_off(lines, content)
    cut = _contact_paragraph(lines, content) if sign_off is None else _under_sign_off(lines, content, sign_off)
    return (lines, []) if cut is None else (lines[:cut], lines[cut:])


def _sign_off(lines: list[str], content: list[int]) -> int | None:
    """The last sign-off ("Kind regards,") among the last ten non-blank lines, with text above it."""
    for i in reversed(content[-10:]):
        if lexicon.closing_of(lines[i]) is not None and _has_content(lines[:i]):
            return i
    return None


def _under_sign_off(lines: list[str], content: list[int], sign_off: int) -> int | None:
    """Where the signature starts below a sign-off: after the name typed under it, if at most eight short lines
    follow."""
    rest = [j for j in content if j > sign_off]
    if "," not in lines[sign_off].strip().rstrip(",") and rest and _is_name(lines[rest[0]]):
        rest = rest[1:]
    if rest and len(rest) <= 8 and all(len(lines[j]) < 80 for j in rest):
        return rest[0]
    return None


def _contact_paragraph(lines: list[str], content: list[int]) -> int | None:
    """Where a last paragraph of short lines opening with a name, two or more of them contact details, starts."""
    if len(content) < 3:
        return None
    first = _last_paragraph(content)
    block = [lines[j] for j in content[first:]]
    if first > 0 and len(block) >= 2 and all(len(ln) < 80 for ln in block) and _is_name(block[0].split("|")[0]) \
            and sum(1 for ln in block if _CONTACT.search(ln)) >= 2:
        return content[first]
    return None


def _last_paragraph(content: list[int]) -> int:
    """Index in ``content`` of the first line of the last run of consecutive lines (at most eight)."""
    first = len(content) - 1
    while first > 0 and content[first - 1] == content[first] - 1 and len(content) - first < 8:
        first -= 1
    return first


def _is_name(line: str) -> bool:
    """A short line that can be a person's name (no digits, address or link)."""
    text = line.strip()
    return 0 < len(text) <= 40 and len(text.split()) <= 4 and not _CONTACT.search(text) \
        and not any(c.isdigit() for c in text)


def _trailing_signature(quoted: list[str]) -> tuple[list[str], list[str]]:
    """A ``-- `` signature right below a ``>`` quote (Thunderbird's "signature below the quote").

    Only blank lines may separate it from the last ``>`` line: a ``--`` further down belongs to
    the quoted mail (an Outlook-style header block quotes the whole original, signature and all)."""
    for i in range(len(quoted) - 1, -1, -1):
        if quoted[i] in ("-- ", "--"):
            j = i - 1
            while j >= 0 and not quoted[j].strip():
                j -= 1
            if j >= 0 and _QUOTED.match(quoted[j]):
                return quoted[:i], quoted[i + 1 :]
            return quoted, []
        if _QUOTED.match(quoted[i]) or lexicon.label_of(quoted[i]):
            return quoted, []
    return quoted, []


def _has_content(lines: list[str]) -> bool:
    return any(_is_content(ln) for ln in lines)


def _is_content(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and stripped != QUOTE_MARK


def _unmark(lines: list[str]) -> list[str]:
    return [ln for ln in lines if ln.strip() != QUOTE_MARK]


def _join(lines: list[str]) -> str:
    return "\n".join(ln.rstrip() for ln in lines).strip("\n")


def strip_mark(text: str) -> str:
    """Text without the HTML quote marker line."""
    return re.sub(r"\n{3,}", "\n\n", "\n".join(ln for ln in text.split("\n") if ln.strip() != QUOTE_MARK))
