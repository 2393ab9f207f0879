"""Sender authentication and staff-forward trust: DKIM verified with local keys, upstream results trusted
only from our own authserv-id, and results recorded on every inbound row by the real pipeline."""

from __future__ import annotations

import base64
import smtplib
from collections.abc import Callable

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from postroom.app import App
from postroom.gateway.auth import AuthResults, assess_staff_forward, authenticate
from postroom.service import Service
from postroom.storage.tables import InboundMessage
from postroom.testing import make_eml, wait_until

STAFF = ("boss@acme-builders.example", "Clerk@Acme-Builders.example")
UPSTREAM = "mx.acme-builders.example"


def _keypair() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


@pytest.fixture(scope="module")
def keys() -> dict[str, tuple[bytes, bytes]]:
    return {"acme-builders.example": _keypair(), "evil.example": _keypair()}


def _dns(keys: dict[str, tuple[bytes, bytes]], lookups: list[bytes] | None = None) -> Callable[..., bytes | None]:
    """A local DNS: TXT for sel._domainkey.<domain> from the generated keys, nothing else."""
    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        if lookups is not None:
            lookups.append(name)
        for domain, (_, txt) in keys.items():
            if name.rstrip(b".") == f"sel._domainkey.{domain}".encode():
                return txt
        return None

    return lookup


def _signed(keys: dict[str, tuple[bytes, bytes]], domain: str, sender: str, body: str = "Forwarding this.\n") -> bytes:
    raw = make_eml(sender=sender, to="inbox@acme.mail.test", subject="Fwd: question", body=body)
    return dkim.sign(raw, b"sel", domain.encode(), keys[domain][0], include_headers=[b"from", b"subject", b"to"]) + raw


def test_valid_signature_passes_with_its_domain(keys: dict) -> None:
    lookups: list[bytes] = []
    raw = _signed(keys, "acme-builders.example", STAFF[0])
    result = authenticate(raw, dnsfunc=_dns(keys, lookups))
    assert (result.dkim, result.dkim_domains, result.dkim_source) == ("pass", ("acme-builders.example",), "local")
    assert lookups == [b"sel._domainkey.acme-builders.example."]
    assert assess_staff_forward(STAFF[0], STAFF, result).trusted


def test_tampered_body_fails_and_is_quarantined(keys: dict) -> None:
    raw = _signed(keys, "acme-builders.example", STAFF[0]).replace(b"Forwarding this.", b"Pay invoice 991.")
    result = authenticate(raw, dnsfunc=_dns(keys))
    assert result.dkim == "fail"
    verdict = assess_staff_forward(STAFF[0], STAFF, result)
    assert verdict.verdict == "quarantine" and "dkim=fail" in verdict.reason


def test_signature_by_another_domain_does_not_vouch_for_staff(keys: dict) -> None:
    raw = _signed(keys, "evil.example", STAFF[0])
    result = authenticate(raw, dnsfunc=_dns(keys))
    assert result.dkim == "pass" and result.dkim_domains == ("evil.example",)
    assert not assess_staff_forward(STAFF[0], STAFF, result).trusted


def test_missing_key_in_dns_is_not_a_pass(keys: dict) -> None:
    raw = _signed(keys, "acme-builders.example", STAFF[0])
    assert authenticate(raw, dnsfunc=_dns({})).dkim != "pass"


def _with_ar(*headers: str, sender: str = STAFF[0]) -> bytes:
    return "".join(f"Authentication-Results: {h}\r\n" for h in headers).encode() + make_eml(sender=sender)


def test_upstream_results_are_trusted_only_from_our_authserv_id_and_only_on_top() -> None:
    good = f"{UPSTREAM}; spf=pass smtp.mailfrom=boss@acme-builders.example; dkim=pass header.d=acme-builders.example;" \
           " dmarc=pass header.from=acme-builders.example"
    trusted = authenticate(_with_ar(good), trusted_authserv_ids=[UPSTREAM])
    assert (trusted.spf, trusted.dkim, trusted.dmarc, trusted.authserv_id) == ("pass", "pass", "pass", UPSTREAM)
    assert assess_staff_forward(STAFF[0], STAFF, trusted).trusted
    forged_id = authenticate(_with_ar(good.replace(UPSTREAM, "mx.attacker.example")), trusted_authserv_ids=[UPSTREAM])
    assert forged_id == AuthResults()
    below = authenticate(_with_ar(f"{UPSTREAM}; dmarc=fail header.from=acme-builders.example", good),
                         trusted_authserv_ids=[UPSTREAM])
    assert below.dmarc == "fail", "a sender-written header lower down must not override the top one"
    assert not assess_staff_forward(STAFF[0], STAFF, below).trusted


@pytest.mark.parametrize(("sender", "results", "trusted"), [
    ("boss@acme-builders.example", AuthResults(dmarc="pass"), True),
    ("BOSS@ACME-BUILDERS.EXAMPLE", AuthResults(dmarc="pass"), True),
    ("clerk@acme-builders.example", AuthResults(spf="pass", spf_domain="acme-builders.example"), True),
    ("boss@acme-builders.example", AuthResults(), False),  # no authentication at all is not trust
    ("boss@acme-builders.example", AuthResults(dmarc="pass", spf="fail"), False),
    ("boss@acme-builders.example", AuthResults(dkim="pass", dkim_domains=("acme-builders.example",),
                                               dmarc="fail"), False),
    ("boss@acme-builders.example", AuthResults(spf="pass", spf_domain="evil.example"), False),
    ("boss@acme-builders.example", AuthResults(dkim="pass", dkim_domains=("builders.example",)), False),
    ("boss@acme-builders.example.evil", AuthResults(dmarc="pass"), False),
    ("customer@example.com", AuthResults(dmarc="pass"), False),
    ("", AuthResults(dmarc="pass"), False),
    (None, AuthResults(dmarc="pass"), False),
])
def test_staff_forward_rule(sender: str | None, results: AuthResults, trusted: bool) -> None:
    assert assess_staff_forward(sender, STAFF, results).trusted is trusted


def test_garbage_never_raises() -> None:
    for raw in (b"", b"\x00\xff" * 100, b"Authentication-Results: ;;;=\r\n\r\n", b"DKIM-Signature: v=1; d=\r\n\r\nx"):
        assert isinstance(authenticate(raw, trusted_authserv_ids=[UPSTREAM], dnsfunc=_dns({})), AuthResults)


def test_every_inbound_row_records_its_results(settings, tenant_ids: dict[str, int]) -> None:  # type: ignore[no-untyped-def]
    """Through the real server and workers: upstream results from a trusted relay, and none for plain mail."""
    svc = Service(settings.replace(trusted_authserv_ids=UPSTREAM, dkim_verify=0)).start()
    try:
        with smtplib.SMTP("127.0.0.1", svc.smtp_port, timeout=10) as client:
            client.sendmail("boss@acme-builders.example", ["inbox@acme.mail.test"],
                            _with_ar(f"{UPSTREAM}; dmarc=pass header.from=acme-builders.example"))
            client.sendmail("x@example.com", ["inbox@acme.mail.test"], make_eml())
        app: App = svc.app

        def recorded() -> list:
            with app.session() as session:
                rows = session.scalars(select(InboundMessage.auth_results).order_by(InboundMessage.id)).all()
            return rows if len(rows) == 2 and all(rows) else []

        first, second = wait_until(recorded, timeout=20)
    finally:
        svc.stop()
    assert first["dmarc"] == "pass" and first["authserv_id"] == UPSTREAM
    assert (second["spf"], second["dkim"], second["dmarc"]) == ("none", "none", "none")


def test_results_round_trip_through_the_row_column() -> None:
    results = AuthResults(dkim="pass", dkim_domains=("acme-builders.example",), authserv_id=UPSTREAM)
    assert AuthResults.from_jsonable(results.to_jsonable()) == results
    assert AuthResults.from_jsonable(None) == AuthResults()
