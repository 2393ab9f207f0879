"""Read an SMTP DATA body in large chunks, with aiosmtpd's exact semantics.

aiosmtpd reads DATA one line at a time (``readuntil(b"\\r\\n")`` plus a list
of lines joined at the end): a few Python steps per 80-byte line, which caps
a gateway process's throughput for large messages (bench/RESULTS.md). This reader
works on whole received chunks instead: one regex scan for dot-led lines
(the end marker, and whether unstuffing is needed), C-speed searches for
over-long lines, one copy out of the stream buffer, and unstuffing with one
``replace`` only when a line was stuffed. What it accepts, refuses and stores is byte for byte
what aiosmtpd's standard path does (tests/gateway/protocol/test_fast_data.py):

- lines end at CRLF only; a bare LF or CR is data (no line break), as in aiosmtpd;
- the body ends at the first line that is exactly ``.``;
- a line (CRLF included) longer than ``line_limit`` → ``500 Line too long``;
  more than ``size_limit`` bytes (as sent, stuffed, CRLFs included) → ``552``;
  when both apply, the one aiosmtpd would meet first wins;
- either way the rest of the body is read and dropped, then the error is given;
- a leading dot is removed from every line that has one (RFC 5321 4.5.2).

It reads the ``asyncio.StreamReader`` buffer directly (``_buffer``,
``_wait_for_data``, ``_maybe_resume_transport``), as aiosmtpd itself does
for STARTTLS; anything sent after the end marker (pipelined commands) stays
in the buffer for the command loop.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from enum import Enum

CRLF = b"\r\n"
_DOT_LINE = re.compile(rb"\r\n\.")


class DataState(Enum):
    NOMINAL = "nominal"
    TOO_LONG = "too long"
    TOO_MUCH = "too much"


@dataclass(frozen=True)
class DataResult:
    state: DataState
    content: bytes | None = None  # unstuffed body when NOMINAL


def unstuff(raw: bytes) -> bytes:
    """Remove the transparency dot of every line that starts with one (copies only if there is one)."""
    content = raw.replace(b"\r\n.", CRLF)
    return content[1:] if content.startswith(b".") else content


def _find_end(buf: bytearray, start: int) -> tuple[int, int, bool]:
    """Scan ``buf`` from ``start`` for lines that begin with a dot: the end marker is the first ``.`` line.

    Returns (end marker start or -1, where the next scan resumes, whether a
    stuffed line was passed). One regex scan for CRLF-dot finds both the end
    and whether unstuffing is needed; ``bytes.find`` of the marker plus
    ``replace`` cost six times as much on text (CRLF every line keeps
    ``find``'s skip short).
    """
    stuffed = False
    pos = start
    while True:
        match = _DOT_LINE.search(buf, pos)
        if match is None:
            return -1, max(pos, len(buf) - 2), stuffed
        at = match.start()
        if len(buf) < at + 5:
            return -1, at, stuffed  # undecided until the next two bytes arrive
        if buf[at + 3:at + 5] == CRLF:
            return at, at, stuffed
        stuffed = True
        pos = at + 3


def _check_lines(buf: bytearray, start: int, stop: int, complete: bool, line_limit: int) -> tuple[int, int, int]:
    """Validate the lines of ``buf[start:stop]``; return (next unchecked line start, long line start, its length).

    Jumps to the last CRLF inside each ``line_limit`` window, so it costs one
    ``rfind`` per ~1 KB rather than one step per line. While the body is not
    complete, a line is judged only once enough bytes of it have arrived to
    also know whether it is a hard over-run (aiosmtpd's stream limit) or a
    soft one (its later length check), which decides 500 versus 552.
    Returns long line start -1 when none was found.
    """
    s = start
    while True:
        remaining = stop - s
        if remaining <= (line_limit if complete else line_limit + 3):
            return (stop if complete else s), -1, 0
        p = buf.rfind(CRLF, s, s + line_limit)
        if p < 0:
            q = buf.find(CRLF, s, s + line_limit + 3)
            return s, s, (q - s if q >= 0 else line_limit + 1)
        s = p + 2


def _classify(long_at: int, long_len: int, size_limit: int | None, line_limit: int) -> DataState:
    """Which error aiosmtpd meets first when a too-long line starts at ``long_at``.

    aiosmtpd counts a line's bytes before its length check, but an over-run of
    its stream limit (content > ``line_limit``) is flagged before counting.
    """
    if size_limit:
        if size_limit < long_at:
            return DataState.TOO_MUCH
        if size_limit < long_at + long_len + 2 and long_len <= line_limit:
            return DataState.TOO_MUCH
    return DataState.TOO_LONG


async def _more(reader: asyncio.StreamReader) -> None:
    if reader._exception is not None:  # type: ignore[attr-defined]
        raise reader._exception  # type: ignore[attr-defined]
    if reader._eof:  # type: ignore[attr-defined]
        raise asyncio.IncompleteReadError(bytes(reader._buffer), None)  # type: ignore[attr-defined]
    await reader._wait_for_data("read_data")  # type: ignore[attr-defined]


async def read_data(reader: asyncio.StreamReader, *, size_limit: int | None, line_limit: int) -> DataResult:
    """Read one DATA body (after the 354) up to and including its end marker."""
    buf: bytearray = reader._buffer  # type: ignore[attr-defined]
    while len(buf) < 3:
        await _more(reader)
    if buf.startswith(b".\r\n"):
        del buf[:3]
        reader._maybe_resume_transport()  # type: ignore[attr-defined]
        return DataResult(DataState.NOMINAL, b"")
    state = DataState.NOMINAL
    scan = checked = 0
    stuffed = buf.startswith(b".")
    while True:
        end, scan, dots = _find_end(buf, scan)
        stuffed = stuffed or dots
        complete = end >= 0
        stop = end + 2 if complete else len(buf)
        if state is DataState.NOMINAL:
            checked, long_at, long_len = _check_lines(buf, checked, stop, complete, line_limit)
            if long_at >= 0:
                state = _classify(long_at, long_len, size_limit, line_limit)
            elif size_limit and (stop > size_limit if complete else stop > size_limit + line_limit + 8):
                state = DataState.TOO_MUCH
        if complete:
            content = None
            if state is DataState.NOMINAL:
                with memoryview(buf) as view, view[:stop] as body:
                    content = unstuff(bytes(body)) if stuffed else bytes(body)
            del buf[:end + 5]  # the body and its end marker, CRLF . CRLF
            reader._maybe_resume_transport()  # type: ignore[attr-defined]
            return DataResult(state, content)
        if state is not DataState.NOMINAL:
            del buf[:-4]  # refused already: keep only what could start the end marker
            scan = 0
        await _more(reader)
