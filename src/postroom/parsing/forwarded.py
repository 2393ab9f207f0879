"""Forwarded mail: recover the original message from an inline or attached forward.

Inline forwards are read with ``email-forward-parser`` (the Python port of
Crisp's email-forward-parser, Apache-2.0): it knows the separators and
header blocks of Gmail, Outlook (desktop, web, new), Apple Mail,
Thunderbird, Yahoo, iOS and others in some twenty languages, which is the
hard, data-heavy part. It is wrapped because it (a) only trusts a subject
without a forward prefix to mean "look for a separator", so a reply quoting
"-----Original Message-----" would count as a forward: replies are never
forwards here; (b) returns dates as the text the client wrote, parsed here
in EN/FR/NL/DE; (c) stops at the first level: forwards of forwards are
followed to the innermost original. ``message/rfc822`` attachments are
parsed as full messages by :func:`postroom.parsing.parse`.

The library's entry point is re-composed from its own parts (:func:`forwarded_metadata`,
same result) because it was most of the stage's CPU: it runs ~70 separator regexes over
every body (several backtrack over each line; bench/RESULTS.md has the cost) and a
per-character Unicode filter. Here a separator regex only runs when the literal text it
cannot match without occurs in the body (so do the original's field regexes,
:mod:`postroom.parsing.forward_original`), and the filter is skipped for text it leaves
unchanged.
"""

from __future__ import annotations

import email.header
import re
import unicodedata

from emailforwardparser import loop, regexs, utils
from emailforwardparser.forward_parser import (
    ForwardMetadata,
    MailboxResult,
    OriginalMetadata,
    ParseBodyResult,
    parse_subject,
)

from postroom.model import Address, Attachment, Forward, ParsedMessage
from postroom.parsing import addresses, forward_original, lexicon
from postroom.parsing.dates import parse_loose
from postroom.parsing.encoded_words import decode_header

_MAX_DEPTH = 5
_MAX_HEADER_SCAN = 60
_QUOTE_PREFIX = re.compile(r"^\s{0,3}> ?")
#: The writer in an attribution line: a (quoted) name then the address in angle brackets.
_ATTRIBUTED = re.compile(r"[,\s]\"?(?P<name>[^\"<>,:]{1,80}?)\"?\s*<(?P<address>[^<>\s@]+@[^<>\s]+)>")


def from_text(text: str, subject: str, note_fallback: str = "",
              attachments: tuple[Attachment, ...] = ()) -> Forward | None:
    """The innermost original of an inline forward in ``text``, or None.

    A forward of a forward is followed inwards while the original found is itself only a carrier: its
    subject opens with a forward prefix, or it has no text of its own above the next separator. An original
    with its own text and a plain subject is the message wanted; what follows it is its quoted history."""
    if lexicon.reply_prefix().match(subject or ""):
        return None
    text = _LONG_SPACE.sub(_shorter_space, text)
    meta, text = _read(text, subject)
    if meta is None:
        return None
    note = meta.message.strip() or note_fallback
    level = text
    for _ in range(_MAX_DEPTH):
        inner, inner_text = _read(meta.email.body, None)
        carrier = any(lexicon.forward_prefix().match(s) for s in (meta.email.subject, _block_subject(level)))
        if inner is None or (inner.message.strip() and not carrier):
            break
        level, meta = inner_text, inner
    return _to_forward(meta, note, attachments, level)


def _block_subject(text: str) -> str:
    """The subject written in the first header block of ``text`` (labels in any listed language)."""
    for line in text.split("\n", _MAX_HEADER_SCAN)[:_MAX_HEADER_SCAN]:
        found = lexicon.label_of(_QUOTE_PREFIX.sub("", line))
        if found and found[0] == "subject":
            return found[1]
    return ""


def _read(text: str, subject: str | None) -> tuple[ForwardMetadata | None, str]:
    """One level: the library's reading, retried on the block rewritten in its words when it found nothing,
    cut inside the header block or missed the sender. Returns the text actually read too."""
    meta = _metadata(text, subject)
    if meta is None or _split_inside_block(meta) or not meta.email.from_.address:
        normalised = _normalise_block(text)
        retry = _metadata(normalised, subject) if normalised is not None else None
        if retry is not None:
            return retry, normalised
    return meta, text


def _split_inside_block(meta: ForwardMetadata) -> bool:
    """The library cut inside a header block it half knew: the forwarder's note ends in label lines."""
    tail = [ln for ln in meta.message.split("\n")[-3:] if ln.strip()]
    return bool(tail) and lexicon.label_of(tail[-1]) is not None


#: Gmail's order, Subject last: the library reads the body from the line after it.
_ENGLISH = {"from": "From", "sent": "Date", "to": "To", "cc": "Cc", "reply_to": "Reply-To", "subject": "Subject"}


def _normalise_block(text: str) -> str | None:
    """The first forward separator and its header block in the words the library knows: any listed language's
    separator and labels (languages.yaml) become Gmail's English ones, and a ``>``-quoted block (MailMate and
    the like) is unquoted. None when there is no separator followed by label lines."""
    lines = text.split("\n")
    i = _separator_line(lines)
    if i is None:
        return None
    quoted = any(ln.lstrip().startswith(">") for ln in lines[i : i + 4] if ln.strip())
    found, j = _labels_below(lines, i, quoted)
    if len(found) < 2:
        return None
    block = [f"{_ENGLISH[role]}: {found[role]}" for role in _ENGLISH if role in found]
    rest = [_QUOTE_PREFIX.sub("", ln) for ln in lines[j:]] if quoted else lines[j:]
    return "\n".join(lines[:i] + ["---------- Forwarded message ---------", *block, "", *rest])


def _separator_line(lines: list[str]) -> int | None:
    """Index of the first forward separator (in any listed language, ``>``-quoted or not) near the top."""
    return next((k for k, line in enumerate(lines[:_MAX_HEADER_SCAN])
                 if len(line) < 200 and lexicon.forward_separator().match(_QUOTE_PREFIX.sub("", line))), None)


def _labels_below(lines: list[str], separator: int, quoted: bool) -> tuple[dict[str, str], int]:
    """The label lines under the separator (blank lines before the first one skipped): the first value of each
    role, and the index of the first line after the block."""
    found: dict[str, str] = {}
    j = separator + 1
    while j < len(lines) and j < separator + _MAX_HEADER_SCAN:
        line = _QUOTE_PREFIX.sub("", lines[j]) if quoted else lines[j]
        label = lexicon.label_of(line)
        if label:
            found.setdefault(label[0], label[1])
        elif line.strip() or found:
            break
        j += 1
    return found, j


def original_subject(subject: str) -> str:
    """A subject without the forwarders' prefixes ("Fwd: TR: Re: x" -> "Re: x"): forward prefixes are cut up
    to the first reply prefix, which belongs to the original."""
    pos = 0
    for _ in range(20):
        found = lexicon.forward_prefix().match(subject, pos)
        if not found:
            break
        pos = found.end()
    return subject[pos:].strip()


def _own_header_block(text: str) -> tuple[Address | None, tuple[Address, ...], tuple[Address, ...]]:
    """From/To/Cc read from the first header block (labels from the language table, any language) or, without
    one, from an attribution line: used when the library found the forward but not who wrote it."""
    lines = text.split("\n")[:_MAX_HEADER_SCAN]
    found: dict[str, str] = {}
    for line in lines:
        label = lexicon.label_of(line)
        if label:
            found.setdefault(label[0], label[1])
        elif found and line.strip() and len(found) >= 2:
            break
    if "from" in found:
        return (addresses.parse_one(found["from"]), addresses.parse_list(found.get("to", "")),
                addresses.parse_list(found.get("cc", "")))
    for line in lines:
        if len(line) < 400 and line.rstrip().endswith((":", "：")) and lexicon.ADDRESS.search(line) \
                and lexicon.wrote().search(line):
            named = _ATTRIBUTED.search(line)
            if named:
                return Address(" ".join(named["name"].split()), named["address"].lower()), (), ()
    return None, (), ()


def _metadata(text: str, subject: str | None) -> ForwardMetadata | None:
    """The library's result; a body that opens with a From:/Date: block counts as forwarded."""
    try:
        meta = forwarded_metadata(text, subject or None)
        if not meta.forwarded and subject:
            meta = forwarded_metadata(text, None)
        if not meta.forwarded and _opens_with_headers(text):
            meta = forwarded_metadata(text, "Fwd: ")
    except Exception:  # regex-heavy third-party code: a failure means "not a forward"
        return None
    email = meta.email
    if not meta.forwarded or not (email.from_.address or email.from_.name or email.body.strip()):
        return None
    return meta


def _opens_with_headers(text: str) -> bool:
    """The body opens with a header block: a From label and a Sent/Date label among its first lines (any language)."""
    head = [ln for ln in text.lstrip().split("\n", 6)[:6] if ln.strip()]
    roles = [found[0] for found in (lexicon.label_of(ln) for ln in head[:4]) if found]
    return bool(roles) and roles[0] == "from" and "sent" in roles


def forwarded_metadata(body: str, subject: str | None = None) -> ForwardMetadata:
    """What ``emailforwardparser.forward_parser.get_forwarded_metadata`` returns, step for step."""
    email = OriginalMetadata()
    forwarded = False
    body_result = ParseBodyResult()
    parsed_subject = ""
    if subject:
        subject = _preprocess(subject)
        parsed_subject = parse_subject(subject)
        forwarded = bool(parsed_subject)
    if not subject or forwarded:
        body_result = _parse_body(_preprocess(body), forwarded)
        if body_result.email:
            forwarded = True
            email = forward_original.parse_original_email(body_result.email, body_result.body)
            email.body = _whole_body(body_result.email, email.body)
    return ForwardMetadata(
        forwarded=forwarded,
        message=body_result.message,
        email=OriginalMetadata(date=email.date, subject=parsed_subject or email.subject, body=email.body,
                               from_=email.from_, to=email.to, cc=email.cc),
    )


def _whole_body(text: str, body: str) -> str:
    """The original's body to the end of the text: the library stops it at the next "Subject:" line, which
    cuts an original's own quoted history (read level by level now, see ``_parse_body``)."""
    for rx in (regexs.BYTE_ORDER_MARK, regexs.QUOTE_LINE_BREAK_OPTIONAL, regexs.QUOTE_LINE_BREAK, regexs.QUOTE,
               regexs.FOUR_SPACES):
        text = rx.sub("", text)
    start = text.find(body[:200]) if body.strip() else -1
    return text[start:].strip() if start >= 0 else body


def _parse_body(body: str, forwarded: bool) -> ParseBodyResult:
    """The library's ``parse_body``, running only the separator regexes whose needle is in the body, and
    returning the text after the first separator (the library returns what follows the last one)."""
    body = regexs.CARRIAGE_RETURN.sub("\n", body)
    body = regexs.BYTE_ORDER_MARK.sub("", body)
    body = regexs.TRAILING_NON_BREAKING_SPACE.sub("", body)
    body = regexs.NON_BREAKING_SPACE.sub(" ", body)
    match = loop.loop_regexes_split(forward_original.possible(_SEPARATORS, body), body, True)
    if len(match) > 2:
        # The library keeps what follows the last separator; here the first level is read, and
        # from_text decides whether to go further in.
        return ParseBodyResult(body=body, message=match[0].strip(), email=body[len(match[0]) + len(match[1]) :].strip())
    if forwarded:
        match = loop.loop_regexes_split(forward_original.possible(_ORIGINAL_FROM, body), body, True)
        if len(match) > 2:
            return ParseBodyResult(body=body, message=match[0].strip(), email=body[len(match[0]) :].strip())
    return ParseBodyResult()


_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
#: The library's regexes open with ``^\s*`` (multi-line) and similar: each line start of a long
#: whitespace run scans the rest of it, quadratic in the run. Runs are cut to a bounded length.
_LONG_SPACE = re.compile(r"\s{65,}")


def _shorter_space(run: re.Match[str]) -> str:
    """A long whitespace run as at most two line breaks (when it had any) or 64 of its characters."""
    text = run.group(0)
    return "\n" * min(text.count("\n"), 2) or text[:64]


def _preprocess(text: str) -> str:
    """``utils.preprocess_string``, which drops non-graphic characters (but line breaks and tabs) and
    decodes RFC 2047 words; text with neither (almost all) comes back unchanged without the per-character work.
    Its stdlib ``decode_header`` is quadratic in the words and lines, so the linear one does the same."""
    if "=?" in text or _ASCII_CONTROL.search(text) or not (
            text.isascii() or all(unicodedata.category(c)[0] != "C" for c in set(text) if not c.isascii())):
        text = "".join(c for c in text if utils.is_graphic(c)).replace("\ufeff", "")
        return str(email.header.make_header(decode_header(text)))
    return text


_SEPARATORS = forward_original.table(regexs.SEPARATOR)
_ORIGINAL_FROM = forward_original.table(regexs.ORIGINAL_FROM)


def _mailbox(box: MailboxResult) -> Address | None:
    if not (box.address or box.name):
        return None
    return Address(name=" ".join(box.name.split()).strip("\"' "), address=box.address.strip().lower())


def _to_forward(meta: ForwardMetadata, note: str, attachments: tuple[Attachment, ...], level: str) -> Forward:
    email = meta.email
    sender = _mailbox(email.from_)
    to = tuple(a for a in (_mailbox(b) for b in email.to) if a)
    cc = tuple(a for a in (_mailbox(b) for b in email.cc) if a)
    if sender is None or not sender.address:
        own_sender, own_to, own_cc = _own_header_block(level)
        if own_sender is not None:
            sender, to, cc = own_sender, to or own_to, cc or own_cc
    return Forward(
        sender=sender,
        to=to,
        cc=cc,
        date=parse_loose(email.date),
        subject=original_subject(email.subject),
        text=email.body.strip("\n"),
        attachments=attachments,
        note=note,
        date_text=email.date.strip(),
    )


def from_attached(parsed: ParsedMessage, note: str) -> Forward:
    """A forward made of an attached message (already parsed, innermost first)."""
    if parsed.forward is not None:
        inner = parsed.forward
        return Forward(inner.sender, inner.to, inner.cc, inner.date, inner.subject, inner.text,
                       inner.attachments, note, inner.date_text, inner.message_id)
    return Forward(
        sender=parsed.sender,
        to=parsed.to,
        cc=parsed.cc,
        date=None if parsed.date_is_fallback else parsed.date,
        subject=parsed.subject,
        text=parsed.text,
        attachments=parsed.attachments,
        note=note,
        date_text=parsed.header("Date") or "",
        message_id=parsed.message_id,
    )

