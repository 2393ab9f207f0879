"""What every new connection pays: a multi-line reply must not wait for the client's delayed ACK."""

from __future__ import annotations

import asyncio
import socket
import time
from concurrent.futures import Future

from aiosmtpd.smtp import SMTP

from postroom.addresses import TenantDirectory
from postroom.gateway.commands import LeanSMTP
from postroom.gateway.handler import GatewayHandler
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


def test_lean_init_sets_what_aiosmtpd_sets() -> None:
    """LeanSMTP builds a connection's protocol without aiosmtpd's introspection: same attributes, same values."""
    loop = asyncio.new_event_loop()
    handler = GatewayHandler(lambda: TenantDirectory("mail.test"), lambda item: Future(), lambda ids: None)
    try:
        options = {"hostname": "mail.test", "data_size_limit": 1000, "enable_SMTPUTF8": True, "decode_data": False,
                   "timeout": 30, "loop": loop, "tls_context": None, "require_starttls": False, "ident": "x ESMTP"}
        lean, standard = LeanSMTP(handler, **options), SMTP(handler, **options)
        assert vars(lean).keys() == vars(standard).keys()
        for name, expected in vars(standard).items():
            value = vars(lean)[name]
            if name in ("_handle_hooks", "_auth_methods"):
                assert {key: _target(v) for key, v in value.items()} == {key: _target(v) for key, v in
                                                                         expected.items()}
            elif name == "_smtp_methods":
                assert value == {key: getattr(lean, f"smtp_{key}") for key in expected}
            elif isinstance(expected, str | int | float | bool | type(None) | dict):
                assert value == expected, name
            elif name != "_strong_reader":  # ReadAheadReader there
                assert type(value) is type(expected), name
        # an option the lean set-up does not know goes through aiosmtpd's own
        assert LeanSMTP(handler, **options, command_call_limit=5)._enforce_call_limit
    finally:
        handler.close()
        loop.close()


def _target(method: object) -> object:
    """What a bound method (or aiosmtpd's (method, builtin) pair) calls, whoever it is bound to."""
    if isinstance(method, tuple):
        return _target(method[0]), method[1]
    return getattr(method, "__func__", method)
