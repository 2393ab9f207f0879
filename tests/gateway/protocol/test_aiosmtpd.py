"""What the fast path takes from aiosmtpd: the exact version, the private names it uses, what a connection sets.

An aiosmtpd upgrade that renames or drops one of these must fail here, not
turn an override into dead code or break the gateway in production.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator
from concurrent.futures import Future
from importlib import metadata
from pathlib import Path

import aiosmtpd.smtp
import pytest

from postroom.addresses import TenantDirectory
from postroom.gateway import protocol
from postroom.gateway.handler import GatewayHandler
from postroom.gateway.protocol import SMTP
from postroom.gateway.protocol.commands import LeanSMTP
from postroom.testing import LoopbackSMTP

ROOT = Path(__file__).resolve().parents[3]


class Handler:
    async def handle_DATA(self, server: SMTP, session: object, envelope: object) -> str:
        return "250 OK"


def test_aiosmtpd_is_the_pinned_version() -> None:
    assert metadata.version("aiosmtpd") == protocol.AIOSMTPD_VERSION
    assert f'"aiosmtpd=={protocol.AIOSMTPD_VERSION}"' in (ROOT / "pyproject.toml").read_text()


@pytest.fixture(scope="module")
def connected() -> Iterator[SMTP]:
    """Stock aiosmtpd's protocol of a live connection, on which every attribute it uses is set."""
    made: list[SMTP] = []

    def make(loop: asyncio.AbstractEventLoop) -> SMTP:
        made.append(SMTP(Handler(), hostname="private.test", loop=loop))
        return made[-1]

    server = LoopbackSMTP(make, Handler())
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            assert sock.recv(512).startswith(b"220")
            yield made[0]
            sock.sendall(b"QUIT\r\n")
    finally:
        server.stop()


def test_every_private_name_used_exists_in_aiosmtpd(connected: SMTP) -> None:
    missing = [name for name in protocol.AIOSMTPD_SMTP_PRIVATE if not hasattr(connected, name)]
    missing += [name for name in protocol.AIOSMTPD_MODULE_PRIVATE if not hasattr(aiosmtpd.smtp, name)]
    missing += [name for name in protocol.STREAM_PROTOCOL_PRIVATE if not hasattr(connected, name)]
    missing += [name for name in protocol.STREAM_READER_PRIVATE if not hasattr(connected._reader, name)]
    assert missing == []


def test_the_lists_name_every_private_aiosmtpd_attribute_the_protocol_uses(connected: SMTP) -> None:
    """Each ``self._x`` the protocol reads, sets or overrides (``def _x``) that stock aiosmtpd has is listed."""
    source = "\n".join(path.read_text() for path in (ROOT / "src/postroom/gateway/protocol").glob("*.py"))
    used = set(re.findall(r"\bself\.(_[A-Za-z]\w*)", source)) | set(re.findall(r"\bdef (_[A-Za-z]\w*)", source))
    listed = {*protocol.AIOSMTPD_SMTP_PRIVATE, *protocol.STREAM_PROTOCOL_PRIVATE}
    assert {name for name in used if hasattr(connected, name)} - listed == set()


def test_only_the_protocol_package_imports_aiosmtpd() -> None:
    importers = [path.relative_to(ROOT) for path in (ROOT / "src/postroom").rglob("*.py")
                 if re.search(r"^\s*(from|import) aiosmtpd\b", path.read_text(), re.MULTILINE)
                 and "gateway/protocol" not in path.as_posix()]
    assert importers == []


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
