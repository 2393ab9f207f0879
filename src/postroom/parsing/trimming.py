"""Reply trimming: split a body into the new reply, the quoted history and the signature.

Written here rather than wrapped. Evaluated on PyPI:
- talon: unmaintained since 2019, pins old lxml/scikit-learn, English-centric.
- email_reply_parser (GitHub's port): last release 2020, English only.
- mail-parser-reply (maintained, EN/DE/FR/NL and more): good header lists,
  but it strips every line (losing ``-- `` and indentation), treats any
  "Best regards" as a signature running to the end of the mail, has no notion
  of ``>`` quote blocks or bottom posting and returns no separate quote, so
  its output cannot fill reply_text / quoted_text / signature.
The rules below are line-based: a quote starts at a client's quote header
("On … wrote:" and its FR/NL/DE forms, possibly wrapped over three lines), an
Outlook header block (From:/Sent: and its FR/NL/DE forms, with the separator
above it), an "Original/forwarded message" separator, the HTML quote marker
put in by :mod:`postroom.parsing.html`, or a ``>`` block. Text above the quote
is the reply (top posting); when nothing is above, the unquoted text after
the quote is (bottom posting). The signature is cut at ``-- ``, a delimiter
line or a mobile "sent from" line in the four languages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from postroom.parsing.html import QUOTE_MARK

_WROTE_WORDS = (r"wrote|writes|a\s+écrit|schreef|schrieb|geschreven|escribió|scrisse|escreveu|napisał|"
                r"skrev|kirjoitti|написал|написала|yazdı|έγραψε|het\s+volgende\s+geschreven|napisał(?:\(a\))?")
_QUOTE_HEADER = [
    re.compile(r"^\s*On\b.{3,300}\b(?:wrote|writes)\s*:\s*$", re.I),
    re.compile(r"^\s*Le\b.{3,300}\ba\s+écrit\s*:\s*$", re.I),
    re.compile(r"^\s*Op\b.{3,300}\b(?:schreef|geschreven)\b.{0,200}:\s*$", re.I),
    re.compile(r"^\s*Am\b.{3,300}\bschrieb\b.{0,200}:\s*$", re.I),
    re.compile(rf"^.{{0,300}}(?:@|\d).{{0,300}}\b(?:{_WROTE_WORDS})\b.{{0,120}}:\s*$", re.I),
    re.compile(r"^.{0,100}\d.{0,100}<[^<>@\s]+@[^<>\s]+>\s*:\s*$"),
    re.compile(r"^\s*\d{4}-\d{2}-\d{2} \d{1,2}:\d{2} GMT[+-]\d{2}:\d{2}\b.{0,120}$"),
]
#: A quote header whose name/address got wrapped over several lines, some blank.
_WRAPPED_START = re.compile(r"^\s*(?:On|Le|Op|Am)\s+\S")
_LABEL = r"\s*[*_]{{0,2}}\s*(?:{})\s*[*_]{{0,2}}\s*:"
_FROM_LABEL = re.compile("^" + _LABEL.format("From|De|Van|Von|Da|Från|Fra|Od|Від|От"), re.I)
_OTHER_LABELS = re.compile(
    "^" + _LABEL.format(
        "Sent|Date|To|Subject|Cc|Reply-To|Envoyé|À|A|Objet|Verzonden|Aan|Onderwerp|Datum|Gesendet|An|Betreff|"
        "Verstuurd|Enviado|Para|Asunto|Inviato|Oggetto|Data|Skickat|Till|Ämne|Sendt|Emne|Wysłano|Temat|Do"
    ),
    re.I,
)
_SEPARATOR = re.compile(
    r"^\s*(?:[-=_*]{2,}\s*[^-=_*\s][^-=_*]{2,60}?\s*[-=_*]{2,}|"
    r"Begin forwarded message:|Début du message (?:réexpédié|transféré)\s*:|Anfang der weitergeleiteten Nachricht:|"
    r"Begin doorgestuurd bericht:|Doorgestuurd bericht:?|Forwarded message:?)\s*$",
    re.I,
)
_RULE = re.compile(r"^\s*(?:_{5,}|-{5,}|={4,})\s*$")
_DATE_LINE = re.compile(r"^\s*(?:Message du|Date|Datum|Sent|Envoyé|Gesendet|Verzonden)\s*:", re.I)
_DELIMITER = re.compile(r"^\s*(?:--|__|ᐧ)\s*$")
_CLOSING = re.compile(
    r"^\s*(?:(?:best|kind|warm|many thanks and|with kind)?\s*regards|"
    r"(?:bien\s+)?cordialement|bien à (?:vous|toi)|salutations(?: distinguées)?|"
    r"met vriendelijke groet(?:en)?|vriendelijke groet(?:en)?|mvg|groeten|"
    r"mit freundlichen grüßen|freundliche grüße|viele grüße|beste grüße|mfg|lg)\s*[,.!]?\s*$",
    re.I,
)
_MOBILE_SIGNATURE = re.compile(
    r"^\s*(?:"
    r"Sent from (?:my |the )?.{1,80}|Sent (?:with|via|using) .{1,40}|Get Outlook for .{1,80}|"
    r"Envoyé (?:de|depuis|à partir de) (?:mon|ma|l'application|l’application|Outlook|Yahoo).{0,80}|"
    r"Obtenir Outlook pour .{1,80}|"
    r"(?:Verzonden|Verstuurd) (?:vanaf|met|via|van) .{1,40}|Download Outlook voor .{1,30}|"
    r"Von meinem .{1,40} gesendet\.?|Gesendet (?:von|mit|über|vom) .{1,40}|Outlook für .{1,20} beziehen"
    r")\s*$",
    re.I,
)
_QUOTED = re.compile(r"^\s*>")
_MAX_WRAPPED = 1000
_DIGIT_OR_AT = re.compile(r"@|\d")


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
    for i, line in enumerate(lines):
        if not line.strip() or _QUOTED.match(line):
            continue
        if line.strip() == QUOTE_MARK or _SEPARATOR.match(line):
            return _back_to_rule(lines, i)
        if _is_quote_header(lines, i) or _is_wrapped_header(lines, i) or _is_header_block(lines, i):
            return _back_to_rule(lines, i)
    return None


def _is_quote_header(lines: list[str], i: int) -> bool:
    for span in (1, 2, 3):
        if i + span > len(lines):
            return False
        last = lines[i + span - 1]
        if not last.strip() or _QUOTED.match(last):
            return False
        if span == 2 and not (_WRAPPED_START.match(lines[i]) or _DIGIT_OR_AT.search(lines[i])):
            return False
        # Every header pattern ends in ":" but the GMT one (one line): ordinary lines skip the regexes.
        if not (last.rstrip().endswith(":") or (span == 1 and "GMT" in last)):
            continue
        joined = " ".join(c.strip() for c in lines[i : i + span])
        if len(joined) <= 400 and any(rx.match(joined) for rx in _QUOTE_HEADER):
            return True
    return False


def _is_wrapped_header(lines: list[str], i: int) -> bool:
    """"On <date> <name>" then "<", "mailto:…", "> wrote:" lines (Gmail via some relays)."""
    if not _WRAPPED_START.match(lines[i]):
        return False
    # The four patterns match at most ~520 characters: longer prefixes (each sliced) need not be tried.
    joined = " ".join(ln.strip() for ln in lines[i : i + 7] if ln.strip())[:_MAX_WRAPPED]
    for end in range(len(joined), 0, -1):
        if joined[end - 1] == ":" and any(rx.match(joined[:end]) for rx in _QUOTE_HEADER[:4]):
            return True
    return False


def _is_header_block(lines: list[str], i: int) -> bool:
    """An Outlook-style block: From: followed by other header labels."""
    if not _FROM_LABEL.match(lines[i]):
        return False
    following = [ln for ln in lines[i + 1 : i + 7] if ln.strip()][:5]
    labels = sum(1 for ln in following if _OTHER_LABELS.match(ln))
    return labels >= (1 if "@" in lines[i] else 2)


def _back_to_rule(lines: list[str], i: int) -> int:
    """Include an Outlook rule line or a date line just above the quote header."""
    start = i
    j = i - 1
    for _ in range(3):
        while j >= 0 and not lines[j].strip():
            j -= 1
        if j < 0 or not (_RULE.match(lines[j]) or _DATE_LINE.match(lines[j]) or lines[j].strip() == QUOTE_MARK):
            break
        start, j = j, j - 1
    return start


def _bottom_posted(lines: list[str], start: int) -> tuple[list[str], list[str]]:
    """Header at the top: the reply is what follows the quoted block."""
    end = next((j for j in range(start, min(start + 7, len(lines))) if lines[j].rstrip().endswith(":")), start)
    i = end + 1
    while i < len(lines) and (not lines[i].strip() or _QUOTED.match(lines[i])):
        i += 1
    if i < len(lines) and any(_QUOTED.match(ln) for ln in lines[end:i]):
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
    """Cut the signature: ``-- ``/delimiter lines after content, or a mobile signature."""
    for i, line in enumerate(lines):
        if len(line) < 120 and _MOBILE_SIGNATURE.match(line):
            return lines[:i], lines[i:]
        if i > 0 and _DELIMITER.match(line) and _has_content(lines[:i]):
            return lines[:i], lines[i + 1 :] if line.strip() in ("--", "-- ") else lines[i:]
    return _split_closing(lines)


def _split_closing(lines: list[str]) -> tuple[list[str], list[str]]:
    """A formal closing ("Regards," "Met vriendelijke groet,") near the end, after content, starts the signature."""
    content = [i for i, ln in enumerate(lines) if ln.strip()]
    for i in content[-6:]:
        after = [ln for ln in lines[i + 1 :] if ln.strip()]
        if _CLOSING.match(lines[i]) and _has_content(lines[:i]) and len(after) <= 4 \
                and all(len(ln) < 80 for ln in after):
            return lines[:i], lines[i:]
    return lines, []


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
        if _QUOTED.match(quoted[i]) or _FROM_LABEL.match(quoted[i]):
            return quoted, []
    return quoted, []


def _has_content(lines: list[str]) -> bool:
    return any(ln.strip() and ln.strip() != QUOTE_MARK for ln in lines)


def _unmark(lines: list[str]) -> list[str]:
    return [ln for ln in lines if ln.strip() != QUOTE_MARK]


def _join(lines: list[str]) -> str:
    return "\n".join(ln.rstrip() for ln in lines).strip("\n")


def strip_mark(text: str) -> str:
    """Text without the HTML quote marker line."""
    return re.sub(r"\n{3,}", "\n\n", "\n".join(ln for ln in text.split("\n") if ln.strip() != QUOTE_MARK))
