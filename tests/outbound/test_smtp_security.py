"""The SMTP transport against aiosmtpd with STARTTLS + AUTH (both required) and with implicit TLS (smtps)."""

from __future__ import annotations

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from postroom.outbound.transports import Outgoing, PermanentFailure, TemporaryFailure, mail_transport

MESSAGE = Outgoing("<m1@acme.mail.test>", "reply+t@acme.mail.test", ("zoe@example.com",),
                   raw=b"From: a@acme.mail.test\r\nTo: zoe@example.com\r\nSubject: hi\r\n"
                       b"Message-ID: <m1@acme.mail.test>\r\n\r\n.leading dot survives\r\nbye\r\n")
USER, PASSWORD = "postroom", "p@ss:w/rd"
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")


def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:  # type: ignore[no-untyped-def]
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(), PASSWORD.encode())
    return AuthResult(success=ok, handled=False)


def secured(start_relay, tls, *, implicit: bool):  # type: ignore[no-untyped-def]
    # aiosmtpd does not count implicit TLS as TLS for auth_require_tls; the whole session is encrypted anyway
    options = {"ssl_context": tls.server_context(), "auth_require_tls": False} if implicit else {
        "tls_context": tls.server_context(), "require_starttls": True, "auth_require_tls": True}
    return start_relay(authenticator=authenticator, auth_required=True, **options)


def url(scheme: str, relay, tls, password: str = PASSWORD) -> str:  # type: ignore[no-untyped-def]
    quoted = password.replace("@", "%40").replace(":", "%3A").replace("/", "%2F")
    return f"{scheme}://{USER}:{quoted}@127.0.0.1:{relay.port}?cafile={tls.cert}&timeout=5"


@pytest.mark.parametrize("scheme, implicit", [("smtp+starttls", False), ("smtps", True)])
def test_tls_and_auth(start_relay, tls, scheme: str, implicit: bool) -> None:
    relay = secured(start_relay, tls, implicit=implicit)
    result = mail_transport(url(scheme, relay, tls)).send(MESSAGE, lambda: None)
    assert result.code == 250 and result.provider_id == "Q0001"
    [got] = relay.received
    assert got.rcpt_tos == ["zoe@example.com"]
    assert b"\r\n.leading dot survives\r\n" in got.data, "dot-stuffing is undone by the server"


def test_wrong_password_is_permanent(start_relay, tls) -> None:
    relay = secured(start_relay, tls, implicit=False)
    with pytest.raises(PermanentFailure) as failure:
        mail_transport(url("smtp+starttls", relay, tls, password="nope")).send(MESSAGE, lambda: None)
    assert failure.value.code == 535 and relay.received == []


def test_plain_smtp_to_a_relay_requiring_starttls_is_refused(start_relay, tls) -> None:
    relay = secured(start_relay, tls, implicit=False)
    with pytest.raises((PermanentFailure, TemporaryFailure)):
        mail_transport(f"smtp://127.0.0.1:{relay.port}?timeout=5").send(MESSAGE, lambda: None)
    assert relay.received == []


def test_untrusted_certificate_is_not_sent_to(start_relay, tls) -> None:
    relay = secured(start_relay, tls, implicit=True)
    with pytest.raises(TemporaryFailure, match="CERTIFICATE_VERIFY_FAILED"):
        mail_transport(f"smtps://{USER}:x@127.0.0.1:{relay.port}?timeout=5").send(MESSAGE, lambda: None)
