"""The SMTP server: aiosmtpd's protocol with postroom's limits and reply codes.

``GatewaySMTP`` adds a per-client-IP connection limit (421) and RFC 3463
enhanced codes on aiosmtpd's size refusals, parses commands more cheaply
(gateway/commands.py) and reads DATA in large chunks (``FastDataSMTP``, see
gateway/data.py); ``Gateway`` runs it on its own
event loop thread so the CLI and the tests start and stop it the same way.
Several gateway processes can share one port (``reuse_port``, SO_REUSEPORT).

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
import socket
import ssl
import sys
import threading
from collections import Counter
from typing import Any

from aiosmtpd.smtp import MISSING

from postroom import metrics
from postroom.gateway.commands import LeanSMTP
from postroom.gateway.data import DataState, read_data
from postroom.gateway.handler import GatewayHandler

log = logging.getLogger(__name__)

SWITCH_INTERVAL = 0.001
TOO_MANY_CONNECTIONS = b"421 4.7.0 Too many connections from your address, try again later\r\n"
IDLE_TIMEOUT = "421 4.4.2 {} Error: timeout exceeded, closing connection"
DATA_TIMEOUT = "421 4.4.2 {} Error: message transfer took too long, closing connection"
SIZE_REPLIES = {
    "552 Error: Too much mail data": "552 5.3.4 Message too big for this system",
    "552 Error: message size exceeds fixed maximum message size": "552 5.3.4 Message size exceeds fixed limit",
}


class ConnectionLimiter:
    """Counts open connections per client IP (event-loop thread only)."""

    def __init__(self, per_ip: int) -> None:
        self.per_ip = per_ip
        self.open: Counter[str] = Counter()

    def acquire(self, ip: str) -> bool:
        if self.per_ip and self.open[ip] >= self.per_ip:
            return False
        self.open[ip] += 1
        return True

    def release(self, ip: str) -> None:
        self.open[ip] -= 1
        if self.open[ip] <= 0:
            del self.open[ip]


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

    async def smtp_DATA(self, arg: str) -> None:
        if "DATA" not in self._handle_hooks:  # the deprecated process_message API: leave it to aiosmtpd
            await super().smtp_DATA(arg)
            return
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
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
        if result.state is not DataState.NOMINAL:
            await self.push("500 Line too long (see RFC5321 4.5.3.1.6)" if result.state is DataState.TOO_LONG
                            else "552 Error: Too much mail data")
            self._set_post_data_state()
            return
        original = result.content or b""
        content: str | bytes = original
        if self._decode_data:
            if self.enable_SMTPUTF8:
                content = original.decode("utf-8", errors="surrogateescape")
            else:
                try:
                    content = original.decode("ascii", errors="strict")
                except UnicodeDecodeError:
                    await self.push("500 Error: strict ASCII mode")
                    return
        self.envelope.content = content
        self.envelope.original_content = original
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        self._reset_timeout()  # storing took our time, not the client's
        await self.push("250 OK" if status is MISSING else status)


class GatewaySMTP(FastDataSMTP):
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


class Gateway:
    """Start/stop one SMTP listener on a background event loop."""

    def __init__(self, handler: GatewayHandler, host: str, port: int, *, hostname: str,
                 data_size_limit: int, max_connections_per_ip: int = 20, timeout: float = 300,
                 data_timeout: float = 1800, tls_context: ssl.SSLContext | None = None,
                 reuse_port: bool = False) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.hostname = hostname
        self.data_size_limit = data_size_limit
        self.limiter = ConnectionLimiter(max_connections_per_ip)
        self.timeout = timeout
        self.data_timeout = data_timeout
        self.tls_context = tls_context
        self.reuse_port = reuse_port
        self.loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None

    def _factory(self) -> GatewaySMTP:
        return GatewaySMTP(
            self.handler, limiter=self.limiter, hostname=self.hostname, data_size_limit=self.data_size_limit,
            enable_SMTPUTF8=True, decode_data=False, timeout=self.timeout, data_timeout=self.data_timeout,
            loop=self.loop,
            tls_context=self.tls_context, require_starttls=False, ident="postroom ESMTP",
        )

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP, not 0: accepted sockets inherit it, and asyncio turns Nagle off only on sockets that name it.
        # With Nagle on, every multi-line reply (EHLO) waited for the client's delayed ACK, on every connection.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((self.host, self.port))
        sock.listen(512)
        sock.setblocking(False)
        return sock

    def start(self) -> tuple[str, int]:
        """Listen and return the bound (host, port); port 0 picks a free one."""
        # The loop thread and the intake threads hand the GIL back and forth on every syscall; with the
        # default switch interval a thread waiting for it stalls the reply path (bench/RESULTS.md).
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
        sock = self._bind()
        self.port = sock.getsockname()[1]
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self._server = self.loop.run_until_complete(self.loop.create_server(self._factory, sock=sock))
            ready.set()
            self.loop.run_forever()

        self._thread = threading.Thread(target=run, name="postroom-smtp", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("SMTP server did not start within 10 s")
        return self.host, self.port

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks(self.loop):
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self._server = None
        self.handler.close()
