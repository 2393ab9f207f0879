"""Header-block repair: what makes the standard library end a message's header fields too early."""

from __future__ import annotations

import re

_FIELD = re.compile(rb"^[!-9;-~]+[ \t]*:")
_MAX_HEADER_BLOCK = 512 * 1024


def repair_header_block(raw: bytes) -> bytes:
    """Fix what makes the stdlib end the headers early: a text line before the first field
    ("---- Original message ----") and folded lines that lost their leading blank.
    Returns ``raw`` itself when nothing needed fixing."""
    end = _header_block_end(raw)
    if end is None:
        return raw
    lines = raw[:end].split(b"\n")
    first = 1 if lines[0].startswith(b"From ") else 0
    dropped = _drop_text_before_fields(lines, first)
    broken = _lost_their_blank(lines, first)
    if not dropped and not broken:
        return raw
    for i in broken:
        lines[i] = b" " + lines[i]
    return b"\n".join(lines) + raw[end:]


def _header_block_end(raw: bytes) -> int | None:
    """Where the first empty line ends the header block (searched in its first ``_MAX_HEADER_BLOCK`` bytes)."""
    ends = [e for e in (raw.find(b"\n\n", 0, _MAX_HEADER_BLOCK), raw.find(b"\n\r\n", 0, _MAX_HEADER_BLOCK))
            if e != -1]
    return min(ends) if ends else None


def _drop_text_before_fields(lines: list[bytes], first: int) -> int:
    """Delete up to three text lines in front of the first field; how many were deleted."""
    dropped = 0
    while dropped < 3 and first < len(lines) - 1 and not _FIELD.match(lines[first]) \
            and _FIELD.match(lines[first + 1]):
        del lines[first]
        dropped += 1
    return dropped


def _lost_their_blank(lines: list[bytes], first: int) -> list[int]:
    """Indexes of the lines after the first field that are neither a field nor folded (no leading blank)."""
    return [i for i in range(first + 1, len(lines))
            if lines[i].strip(b"\r") and not _FIELD.match(lines[i]) and lines[i][:1] not in b" \t"]
