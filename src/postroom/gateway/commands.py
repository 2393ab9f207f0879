"""aiosmtpd's command path without its per-command overhead; same replies (tests/gateway/test_commands.py).

Every MAIL and RCPT went through ``SMTP._getaddr``, which defines a
``typing.Protocol`` class on each call (a class creation, ABC machinery and
garbage for the cycle collector) and then runs the ``email`` header parser's
tokenizer over the address. Plain ``<local@domain>`` paths, which is what
MTAs send, are parsed here by one regular expression giving exactly what the
tokenizer would; anything else (comments, quoted local parts, source routes,
address literals, encoded words, non-ASCII) still goes to the tokenizer.
Every command also cancelled its idle timer and scheduled a new one; here a
connection keeps one timer that re-arms itself for the latest deadline.
And the stream reader, whose limit is the line length limit (1001 bytes),
stopped reading the socket whenever more than 2 KB were buffered: two
``epoll_ctl`` calls and an extra loop turn for every message body; here it
reads ahead up to ``READ_AHEAD`` bytes (the bound of memory per connection).
"""

from __future__ import annotations

import asyncio
import logging
import re
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP

log = logging.getLogger("mail.log")  # aiosmtpd's logger

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
# A dot-atom local part and a hostname-like domain in angle brackets: text the tokenizer returns unchanged.
_PLAIN_PATH = re.compile(rf"<({_ATEXT}+(?:\.{_ATEXT}+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>")
_WSP = " \t"
READ_AHEAD = 256 * 1024


def plain_path(arg: str) -> tuple[str, str] | None:
    """(address, rest) as ``get_angle_addr`` gives them, for a plain path; None when the tokenizer must decide."""
    match = _PLAIN_PATH.match(arg)
    if match is None:
        return None
    address = match.group(1)
    if address.startswith("=?"):  # an RFC 2047 encoded word, which the tokenizer decodes
        return None
    rest = arg[match.end():]
    if rest[:1] in _WSP:
        rest = rest.lstrip()  # the tokenizer's folding white space strips every kind of white space
    if rest[:1] == "(":  # a comment, also skipped by the tokenizer
        return None
    return address, rest


class ReadAheadReader(asyncio.StreamReader):
    """A StreamReader that pauses the transport only past ``READ_AHEAD`` buffered bytes, not twice its limit."""

    def feed_data(self, data: bytes) -> None:
        if data and not self._eof and len(self._buffer) + len(data) <= READ_AHEAD:  # type: ignore[attr-defined]
            self._buffer.extend(data)  # type: ignore[attr-defined]
            self._wakeup_waiter()  # type: ignore[attr-defined]
        else:
            super().feed_data(data)


class LeanSMTP(SMTP):
    """aiosmtpd's SMTP with a cheap address parse for plain paths, one idle timer per connection, a lean push."""

    _deadline = 0.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stream_reader.__class__ = ReadAheadReader  # aiosmtpd builds a plain one; same state, other pausing

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        if not arg:
            return "", ""
        parsed = plain_path(arg)
        if parsed is None:
            try:
                address, rest = (get_angle_addr if arg.lstrip().startswith("<") else get_addr_spec)(arg)
            except HeaderParseError:
                return None, None
            parsed = address.addr_spec, rest
        if self.local_part_limit and len(parsed[0].rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return parsed

    def _reset_timeout(self, duration: float | None = None) -> None:
        self._deadline = deadline = self.loop.time() + (duration or self._timeout_duration)
        handle = self._timeout_handle
        if handle is None or handle.cancelled() or handle.when() > deadline:
            if handle is not None:
                handle.cancel()
            self._timeout_handle = self.loop.call_at(deadline, self._timeout_due)

    def _timeout_due(self) -> None:
        if self.loop.time() < self._deadline:
            self._timeout_handle = self.loop.call_at(self._deadline, self._timeout_due)
        else:
            self._timeout_cb()

    async def push(self, status: AnyStr) -> None:
        response = status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii") if isinstance(status, str) else status
        writer: asyncio.StreamWriter = self._writer
        writer.write(response + b"\r\n")
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%r << %r", self.session.peer if self.session else None, response)
        await writer.drain()
