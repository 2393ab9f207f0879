"""aiosmtpd's command path without its per-command overhead; same replies (tests/gateway/protocol/test_commands.py).

Every MAIL and RCPT went through ``SMTP._getaddr``, which defines a
``typing.Protocol`` class on each call (a class creation, ABC machinery and
garbage for the cycle collector) and then runs the ``email`` header parser's
tokenizer over the address. Plain ``<local@domain>`` paths, which is what
MTAs send, are parsed here by one regular expression giving exactly what the
tokenizer would; anything else (comments, quoted local parts, source routes,
address literals, encoded words, non-ASCII) still goes to the tokenizer.
MAIL and RCPT with such a path and the usual parameters take a short path
(no coroutine per precondition check, no parameter dictionary); any other
form, and every error reply, is left to aiosmtpd's own handler.
Every command also cancelled its idle timer and scheduled a new one; here a
connection keeps one timer that re-arms itself for the latest deadline.
Building the protocol object for a new connection ran ``inspect.getmembers``
over the server and the handler (hundreds of attributes) to find the AUTH
mechanisms, hooks and commands, which are the same for every connection of
a class and handler; here the names are found once per class and only bound
per connection (``LeanSMTP.__init__``, for the options the gateway uses).
And the stream reader, whose limit is the line length limit (1001 bytes),
stopped reading the socket whenever more than 2 KB were buffered: two
``epoll_ctl`` calls and an extra loop turn for every message body; here it
reads ahead up to ``READ_AHEAD`` bytes (the bound of memory per connection).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import ssl
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import Any, AnyStr

from aiosmtpd.smtp import MISSING, SMTP, _AuthMechAttr, login_always_fail, syntax
from aiosmtpd.smtp import __ident__ as DEFAULT_IDENT

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


# The options ``LeanSMTP.__init__`` sets up itself; any other (AUTH, PROXY, call limits) goes through aiosmtpd's.
LEAN_OPTIONS = frozenset({"data_size_limit", "enable_SMTPUTF8", "decode_data", "hostname", "ident", "tls_context",
                          "require_starttls", "timeout", "loop"})


@functools.cache
def _named(cls: type, prefix: str) -> tuple[str, ...]:
    """The sorted attribute names of ``cls`` starting with ``prefix`` (what ``dir``/``getmembers`` would list)."""
    return tuple(name for name in dir(cls) if name.startswith(prefix))


def _instance_named(obj: object, prefix: str) -> list[str]:
    """``_named`` for an object: its class's names plus any instance attribute of that prefix, sorted as dir()."""
    names = _named(type(obj), prefix)
    own = [name for name in getattr(obj, "__dict__", ()) if name.startswith(prefix) and name not in names]
    return sorted((*names, *own)) if own else list(names)


class LeanSMTP(SMTP):
    """aiosmtpd's SMTP with plain MAIL/RCPT handled on a short path, one idle timer per connection, a lean push."""

    _deadline = 0.0

    def __init__(self, handler: Any, **kwargs: Any) -> None:
        hostname, tls_context = kwargs.get("hostname"), kwargs.get("tls_context")
        quiet_tls = tls_context is None or (tls_context.verify_mode in (ssl.CERT_NONE, ssl.CERT_OPTIONAL)
                                            and not tls_context.check_hostname)  # else aiosmtpd warns
        if (kwargs.keys() <= LEAN_OPTIONS and hostname and kwargs.get("loop") and quiet_tls
                and not hasattr(handler, "handle_EHLO")):  # aiosmtpd checks that hook's signature
            self._lean_init(handler, **kwargs)
        else:
            super().__init__(handler, **kwargs)
        self._stream_reader.__class__ = ReadAheadReader  # aiosmtpd builds a plain one; same state, other pausing

    def _lean_init(self, handler: Any, *, hostname: str, loop: asyncio.AbstractEventLoop,
                   data_size_limit: int | None = 33554432, enable_SMTPUTF8: bool = False, decode_data: bool = False,
                   ident: str | None = None, tls_context: Any = None, require_starttls: bool = False,
                   timeout: float = 300) -> None:
        """What ``SMTP.__init__`` sets for these options, without introspecting the server and handler again."""
        self.__ident__ = ident or DEFAULT_IDENT
        self.loop = loop
        asyncio.StreamReaderProtocol.__init__(
            self, asyncio.StreamReader(loop=loop, limit=self.line_length_limit),
            client_connected_cb=self._cb_client_connected, loop=loop)
        self.event_handler = handler
        self.data_size_limit = data_size_limit
        self.enable_SMTPUTF8 = enable_SMTPUTF8
        self._decode_data = decode_data
        self.command_size_limits.clear()  # a class-level dict that EHLO fills; aiosmtpd clears it per connection too
        self.hostname = hostname
        self.tls_context = tls_context
        self.require_starttls = tls_context and require_starttls
        self._timeout_duration = timeout
        self._timeout_handle = None
        self._tls_handshake_okay = True
        self._tls_protocol = None
        self._original_transport = None
        self.session = None
        self.envelope = None
        self.transport = None
        self._handler_coroutine = None
        self._auth_require_tls = True
        self._proxy_timeout = None
        self._authenticator = None
        self._auth_callback = login_always_fail
        self._auth_required = False
        self._auth_methods = {}
        for obj in (self, handler):
            for name in _instance_named(obj, "auth_"):
                method = getattr(obj, name)
                mechanism = getattr(method, "__auth_mechanism_name__", name.replace("auth_", "").replace("__", "-"))
                self._auth_methods[mechanism] = _AuthMechAttr(method, obj is self)
        self._handle_hooks = {name[7:]: getattr(handler, name) for name in _instance_named(handler, "handle_")}
        self._ehlo_hook_ver = None
        self._smtp_methods = {name[5:]: getattr(self, name) for name in _named(type(self), "smtp_")}
        self._enforce_call_limit = False

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

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")  # as aiosmtpd's: HELP shows it
    async def smtp_MAIL(self, arg: str | None) -> None:
        """A plain ``MAIL FROM:<path>`` with well-formed SIZE/BODY/SMTPUTF8 here; anything else by aiosmtpd."""
        session, envelope = self.session, self.envelope
        parsed = self._plain_argument(arg, "FROM:")
        if parsed is None or envelope.mail_from or (parsed[1] and not session.extended_smtp):
            return await super().smtp_MAIL(arg)
        address, params = parsed
        mail_options = params.upper().split()
        smtputf8 = self._plain_mail_options(mail_options)
        if smtputf8 is None:
            return await super().smtp_MAIL(arg)
        envelope.smtp_utf8 = smtputf8
        status = await self._call_handler_hook("MAIL", address, mail_options)
        if status is MISSING:
            envelope.mail_from = address
            envelope.mail_options.extend(mail_options)
            status = "250 OK"
        log.info("%r sender: %s", session.peer, address)
        await self.push(status)

    def _plain_mail_options(self, mail_options: list[str]) -> bool | None:
        """Whether SMTPUTF8 is asked for, when every option is a SIZE within the limit, a BODY or SMTPUTF8 that
        aiosmtpd would accept as is; None when aiosmtpd must decide (and word the reply)."""
        smtputf8 = False
        for option in mail_options:
            name, _, value = option.partition("=")
            if name == "SIZE" and value.isascii() and value.isdigit():
                if self.data_size_limit and int(value) > self.data_size_limit:
                    return None
            elif name == "BODY" and value in ("7BIT", "8BITMIME") and not self._decode_data:
                pass
            elif option == "SMTPUTF8" and self.enable_SMTPUTF8:
                smtputf8 = True
            else:
                return None
        return smtputf8

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:
        """A plain ``RCPT TO:<path>`` without parameters here; anything else by aiosmtpd."""
        parsed = self._plain_argument(arg, "TO:")
        if parsed is None or not self.envelope.mail_from or parsed[1]:
            return await super().smtp_RCPT(arg)
        address = parsed[0]
        status = await self._call_handler_hook("RCPT", address, [])
        if status is MISSING:
            self.envelope.rcpt_tos.append(address)
            status = "250 OK"
        log.info("%r recip: %s", self.session.peer, address)
        await self.push(status)

    def _plain_argument(self, arg: str | None, keyword: str) -> tuple[str, str] | None:
        """(address, parameters) of ``keyword<plain path> params`` when HELO and AUTH allow the command."""
        session = self.session
        if arg is None or not session.host_name or (self._auth_required and not session.authenticated):
            return None
        if arg[:len(keyword)].upper() != keyword:
            return None
        parsed = plain_path(arg[len(keyword):].strip())
        if parsed is None or (self.local_part_limit and len(parsed[0].rpartition("@")[0]) > self.local_part_limit):
            return None
        return parsed

    async def push(self, status: AnyStr) -> None:
        response = status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii") if isinstance(status, str) else status
        writer: asyncio.StreamWriter = self._writer
        writer.write(response + b"\r\n")
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%r << %r", self.session.peer if self.session else None, response)
        await writer.drain()
