"""What every new connection pays: a multi-line reply must not wait for the client's delayed ACK."""

from __future__ import annotations

import socket
import time

from postroom.service import Service


def _ehlo_seconds(port: int) -> float:
    """Seconds from sending EHLO to the last line of its reply, on a fresh connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock, sock.makefile("rb") as replies:
        assert replies.readline().startswith(b"220")
        started = time.perf_counter()
        sock.sendall(b"EHLO client.example\r\n")
        lines = 1
        while replies.readline()[3:4] == b"-":
            lines += 1
        took = time.perf_counter() - started
        sock.sendall(b"QUIT\r\n")
        replies.readline()
    assert lines >= 3  # several segments, so Nagle's algorithm would hold back all but the first
    return took


def test_multiline_reply_is_not_held_back_by_nagle(service: Service) -> None:
    """With Nagle on (a listening socket made with proto 0: asyncio then leaves TCP_NODELAY off), the second
    EHLO line waits for the client's delayed ACK, 40 ms or more on Linux, on every try."""
    fastest = min(_ehlo_seconds(service.smtp_port) for _ in range(5))
    assert fastest < 0.025
