"""postroom's SMTP protocol: the lean command path with DATA read in chunks, its limits and reply codes.

``GatewaySMTP`` adds a per-client-IP connection limit (421) and RFC 3463
enhanced codes on aiosmtpd's size refusals to ``FastDataSMTP``, which reads
DATA in large chunks (see data.py) on top of the lean command path
(commands.py).

Two clocks bound a session. Outside DATA each command must arrive whole
within ``timeout`` seconds of the previous one (a command line is short, so a
client trickling one is a slowloris). Inside DATA the same ``timeout`` is an
idle limit that restarts at every read, so a slow but steady link can send a
large message, while ``data_timeout`` bounds the whole body: a client that
keeps dripping bytes cannot hold the connection for ever. Either one ends the
session with ``421 4.4.2`` and closes it: in the middle of a body nothing
else can be answered, since the rest of the body would be read as commands.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import MISSING, syntax

from postroom import metrics
from postroom.gateway.protocol.commands import LeanSMTP
from postroom.gateway.protocol.data import DataResult, DataState, read_data

if TYPE_CHECKING:
    from postroom.gateway.handler import GatewayHandler
    from postroom.gateway.server import ConnectionLimiter

log = logging.getLogger(__name__)

TOO_MANY_CONNECTIONS = b"421 4.7.0 Too many connections from your address, try again later\r\n"
IDLE_TIMEOUT = "421 4.4.2 {} Error: timeout exceeded, closing connection"
DATA_TIMEOUT = "421 4.4.2 {} Error: message transfer took too long, closing connection"
SIZE_REPLIES = {
    "552 Error: Too much mail data": "552 5.3.4 Message too big for this system",
    "552 Error: message size exceeds fixed maximum message size": "552 5.3.4 Message size exceeds fixed limit",
}


class FastDataSMTP(LeanSMTP):
    """aiosmtpd's SMTP (lean command path, see commands.py) with DATA read in chunks; same replies, same bytes.

    While a body is read, every read restarts the idle timer, up to the
    ``data_timeout`` seconds allowed for the whole body (0: no such bound).
    """

    _data_deadline = 0.0  # loop time the body must be complete by; 0 outside DATA

    def __init__(self, *args: Any, data_timeout: float = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.data_timeout = data_timeout

    def data_received(self, data: bytes) -> None:
        if self._data_deadline:
            self._deadline = min(self.loop.time() + self._timeout_duration, self._data_deadline)
        super().data_received(data)

    def _start_data_clock(self) -> None:
        total = self.data_timeout or math.inf
        self._data_deadline = self.loop.time() + total
        self._reset_timeout(min(self._timeout_duration, total))

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        if "DATA" not in self._handle_hooks:  # the deprecated process_message API: leave it to aiosmtpd
            await super().smtp_DATA(arg)
            return
        if not await self._data_may_start(arg):
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        result = await self._read_body()
        if result.state is not DataState.NOMINAL:
            await self.push("500 Line too long (see RFC5321 4.5.3.1.6)" if result.state is DataState.TOO_LONG
                            else "552 Error: Too much mail data")
            self._set_post_data_state()
            return
        original = result.content or b""
        content = self._decoded(original)
        if content is None:
            await self.push("500 Error: strict ASCII mode")
            return
        self.envelope.content = content
        self.envelope.original_content = original
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        self._reset_timeout()  # storing took our time, not the client's
        await self.push("250 OK" if status is MISSING else status)

    async def _data_may_start(self, arg: str) -> bool:
        """aiosmtpd's checks before its 354, with its replies: HELO, AUTH, a recipient, no argument."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return False
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return False
        if arg:
            await self.push("501 Syntax: DATA")
            return False
        return True

    async def _read_body(self) -> DataResult:
        """The body up to its end marker, under the DATA clock; then the command clock again."""
        self._start_data_clock()
        try:
            result = await read_data(self._reader, size_limit=self.data_size_limit, line_limit=self.line_length_limit)
        except asyncio.CancelledError:
            log.info("connection lost during DATA")
            self._writer.close()
            raise
        finally:
            self._data_deadline = 0.0
        self._reset_timeout()
        return result

    def _decoded(self, original: bytes) -> str | bytes | None:
        """The content as aiosmtpd hands it to the handler under ``decode_data``; None if strict ASCII fails."""
        if not self._decode_data:
            return original
        if self.enable_SMTPUTF8:
            return original.decode("utf-8", errors="surrogateescape")
        try:
            return original.decode("ascii", errors="strict")
        except UnicodeDecodeError:
            return None


class GatewaySMTP(FastDataSMTP):
    """The gateway's protocol: one per connection, refused at once past the per-IP connection limit."""

    def __init__(self, handler: GatewayHandler, *, limiter: ConnectionLimiter, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.limiter = limiter
        self._client_ip: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._client_ip is None and self.transport is None:
            peer = transport.get_extra_info("peername")
            ip = peer[0] if isinstance(peer, tuple) else str(peer)
            if not self.limiter.acquire(ip):
                log.warning("refusing connection from %s: too many open connections", ip)
                transport.write(TOO_MANY_CONNECTIONS)  # type: ignore[attr-defined]
                transport.close()
                return
            self._client_ip = ip
            metrics.SMTP_SESSIONS.inc()
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._client_ip is None:
            return
        self.limiter.release(self._client_ip)
        self._client_ip = None
        super().connection_lost(error)

    def eof_received(self) -> bool | None:
        if self._client_ip is None:
            return False
        return super().eof_received()

    async def push(self, status: str) -> None:
        await super().push(SIZE_REPLIES.get(status, status))
        if status.startswith("421") and self.transport is not None:
            self._close_now()

    def _close_now(self) -> None:
        """End the session after a 421 (RFC 5321 3.8): commands already pipelined behind it are not run.

        Closing the transport stops reading the socket, but the command loop
        would go on with whatever was buffered (hundreds of pipelined MAIL
        FROM); with the buffer emptied it waits for data that never comes,
        until ``connection_lost`` cancels it.
        """
        self._reader._buffer.clear()  # type: ignore[attr-defined]
        self.transport.close()

    def _timeout_cb(self) -> None:
        """Say why before closing (RFC 5321 4.5.3.2 lets a server end a timed-out session with 421)."""
        if self.transport is None:
            return
        in_data = bool(self._data_deadline) and self.loop.time() >= self._data_deadline
        if in_data:
            log.warning("%s: DATA not complete after %s s, closing", self._client_ip, self.data_timeout)
            metrics.REFUSED.labels("data_timeout").inc()
        else:
            log.info("%s: idle for %s s, closing", self._client_ip, self._timeout_duration)
        reply = (DATA_TIMEOUT if in_data else IDLE_TIMEOUT).format(self.hostname)
        self.transport.write(reply.encode("ascii", "replace") + b"\r\n")  # type: ignore[attr-defined]
        self.transport.close()
