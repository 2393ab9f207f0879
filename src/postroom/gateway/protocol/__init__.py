"""postroom's SMTP protocol: aiosmtpd's ``SMTP`` with a faster command and DATA path, and the only code that
imports aiosmtpd.

The fast path overrides and reads aiosmtpd internals, so pyproject.toml pins
aiosmtpd exactly (``AIOSMTPD_VERSION``) and every private name used is listed
below; tests/gateway/protocol/ checks that each still exists in the installed
aiosmtpd (an upgrade fails there, not in production) and that the fast path
answers and stores exactly what stock aiosmtpd does. bench/protocol.py
measures it against stock aiosmtpd with the same handler.

- commands.py: ``LeanSMTP``, MAIL/RCPT and connection set-up without aiosmtpd's per-command overhead;
- data.py: the DATA body read in chunks from the stream buffer;
- smtp.py: ``FastDataSMTP`` (DATA through data.py) and ``GatewaySMTP`` (connection limit, reply codes, timeouts).
"""

from aiosmtpd.smtp import SMTP, Envelope, Session

from postroom.gateway.protocol.smtp import GatewaySMTP

AIOSMTPD_VERSION = "1.4.6"

# Private names of aiosmtpd.smtp used here: set by LeanSMTP._lean_init in place of SMTP.__init__, read,
# called, or overridden (_getaddr, _reset_timeout, _timeout_cb); each is an attribute of a connected SMTP.
AIOSMTPD_SMTP_PRIVATE = (
    "__ident__", "_decode_data", "_timeout_duration", "_timeout_handle", "_tls_handshake_okay", "_tls_protocol",
    "_original_transport", "_handler_coroutine", "_auth_require_tls", "_proxy_timeout", "_authenticator",
    "_auth_callback", "_auth_required", "_auth_methods", "_handle_hooks", "_ehlo_hook_ver", "_smtp_methods",
    "_enforce_call_limit", "_cb_client_connected", "_call_handler_hook", "_set_post_data_state", "_reader",
    "_writer", "_getaddr", "_reset_timeout", "_timeout_cb",
)
AIOSMTPD_MODULE_PRIVATE = ("_AuthMechAttr",)  # names imported from aiosmtpd.smtp
# asyncio internals the fast path reads, as aiosmtpd itself does for STARTTLS: the protocol's reader, its buffer.
STREAM_PROTOCOL_PRIVATE = ("_stream_reader",)
STREAM_READER_PRIVATE = ("_buffer", "_eof", "_exception", "_wakeup_waiter", "_wait_for_data",
                         "_maybe_resume_transport")

__all__ = ["AIOSMTPD_VERSION", "SMTP", "Envelope", "GatewaySMTP", "Session"]
