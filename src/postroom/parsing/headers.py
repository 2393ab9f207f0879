"""Header fields: raw values by name, and their text with RFC 2047 words and raw 8-bit bytes decoded.

Headers are decoded from their raw form (compat32 keeps it), so a broken header never raises.
"""

from __future__ import annotations

import email.errors
import re
from email.message import Message

from postroom.parsing.charsets import decode_bytes, guess_decode
from postroom.parsing.encoded_words import decode_header

_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
_FOLD = re.compile(r"\r?\n[ \t]")
#: Runs of ASCII whitespace only: a non-breaking space in a subject is kept as written.
_SPACES = re.compile(r"[ \t\r\n\f\v]+")
_SURROGATE = re.compile("[\udc80-\udcff]")


def raw_bytes(value: str) -> bytes:
    """Undo the parser's surrogateescape so raw 8-bit header bytes come back."""
    return value.encode("utf-8", errors="surrogateescape")


def decode_header_value(value: str | None) -> str:
    """A header's text: RFC 2047 words and raw 8-bit bytes decoded, unfolded, without NULs.

    A NUL is never meaningful in a header and no database text column takes it.
    """
    return _decode_header_value(value).replace("\x00", "\ufffd")


def _decode_header_value(value: str | None) -> str:
    if not value:
        return ""
    if value.isascii() and "\n" not in value and "\r" not in value and "=?" not in value:
        return value.strip()  # most headers: nothing to unfold or decode
    value = _FOLD.sub(" ", str(value)).replace("\r", "").replace("\n", "")
    if has_surrogates(value):
        value = guess_decode(raw_bytes(value))
    if "=?" not in value:
        return value.strip()
    # Outlook and others put encoded words inside quotes and words; split them out.
    spaced = _ENCODED_WORD.sub(lambda m: f" {m.group(0)} ", value)
    try:
        chunks = decode_header(spaced)
    except (ValueError, AssertionError, LookupError, email.errors.HeaderParseError):  # a broken word stays as sent
        return value.strip()
    out = []
    for chunk, charset in chunks:
        out.append(decode_bytes(chunk, charset) if isinstance(chunk, bytes) else chunk)
    return _SPACES.sub(" ", "".join(out)).strip()


def has_surrogates(value: str) -> bool:
    """Raw 8-bit bytes the parser kept as surrogate escapes."""
    return not value.isascii() and _SURROGATE.search(value) is not None


def header_index(msg: Message) -> dict[str, list[str]]:
    """Raw header values by lower-cased name, in order: one pass over the fields instead of one per lookup."""
    index: dict[str, list[str]] = {}
    for key, value in msg.raw_items():
        index.setdefault(key.lower(), []).append(str(value))
    return index


def raw_header(msg: Message, name: str) -> str | None:
    """First raw value of a header, bypassing the policy's header classes."""
    lname = name.lower()
    for key, value in msg.raw_items():
        if key.lower() == lname:
            return str(value)
    return None


def header(msg: Message, name: str) -> str:
    """Decoded text of a header (empty when absent)."""
    return decode_header_value(raw_header(msg, name))
