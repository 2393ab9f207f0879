"""The SMTP listener: postroom's protocol (gateway/protocol) on its own event loop thread.

``Gateway`` runs it so the CLI and the tests start and stop it the same way;
``ConnectionLimiter`` counts each client IP's open connections for the
protocol's 421. Several gateway processes can share one port (``reuse_port``,
SO_REUSEPORT).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys
import threading
from collections import Counter

from postroom.gateway.handler import GatewayHandler
from postroom.gateway.protocol import GatewaySMTP

SWITCH_INTERVAL = 0.001


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
