"""Header-block repair: what makes the standard library end a message's header fields too early."""

from __future__ import annotations

import re

_FIELD = re.compile(rb"^[!-9;-~]+[ \t]*:")
_MAX_HEADER_BLOCK = 512 * 1024


def repair_header_block(raw: bytes) -> bytes:
    """Fix what makes the stdlib end the headers early: a text line before the first field
    ("---- Original message ----") and folded lines that lost their leading blank.
    Returns ``raw`` itself when nothing needed fixing."""
    ends = [e for e in (raw.find(b"\n\n", 0, _MAX_HEADER_BLOCK), raw.find(b"\n\r\n", 0, _MAX_HEADER_BLOCK))
            if e != -1]
    if not ends:
        return raw
    end = min(ends)
    lines = raw[:end].split(b"\n")
    first = 1 if lines[0].startswith(b"From ") else 0
    dropped = 0
    while dropped < 3 and first < len(lines) - 1 and not _FIELD.match(lines[first]) \
            and _FIELD.match(lines[first + 1]):
        del lines[first]
        dropped += 1
    broken = [i for i in range(first + 1, len(lines))
              if lines[i].strip(b"\r") and not _FIELD.match(lines[i]) and lines[i][:1] not in b" \t"]
    if not dropped and not broken:
        return raw
    for i in broken:
        lines[i] = b" " + lines[i]
    return b"\n".join(lines) + raw[end:]
