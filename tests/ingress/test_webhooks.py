"""Provider webhooks over real HTTP: documented payloads, signatures computed here, stored before 200."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import time
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select

from postroom.storage import ingress
from postroom.storage.blobs import sha256_hex
from postroom.storage.tables import InboundMessage
from postroom.testing import make_eml, wait_until

SIGNING_KEY = "key-mailgun-signing-0123456789"
BASIC = "postroom:pm-pass-9f8e"


def _secrets(app) -> None:
    with app.session() as session:
        ingress.set_webhook_secret(session, "acme", "mailgun", SIGNING_KEY)
        ingress.set_webhook_secret(session, "acme", "postmark", BASIC)
        ingress.set_webhook_secret(session, "acme", "sendgrid", BASIC)


def _done(app, source: str) -> list:
    with app.session() as session:
        return list(session.scalars(select(InboundMessage).where(InboundMessage.source == source,
                                                                 InboundMessage.status == "done")))


def _mailgun_form(raw: bytes, key: str = SIGNING_KEY) -> dict[str, str]:
    timestamp, token = str(int(time.time())), "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {"recipient": "support@acme.mail.test", "sender": "jean@example.com", "timestamp": timestamp,
            "token": token, "signature": signature, "body-mime": raw.decode()}


def test_each_provider_delivers_a_conversation_message(service) -> None:
    _secrets(service.app)
    base = service.http_url
    mailgun = httpx.post(f"{base}/ingest/mailgun/acme", files={"attachment-count": (None, "0")},
                         data=_mailgun_form(make_eml(subject="via mailgun", to="support@acme.mail.test")))
    assert mailgun.status_code == 200, mailgun.text
    postmark_json = {
        "FromFull": {"Email": "jean@example.com"}, "To": "inbox@acme.mail.test", "OriginalRecipient":
        "inbox@acme.mail.test", "Subject": "via postmark", "MessageID": "22c74902-a0c1-4511-804f-341342852c90",
        "RawEmail": make_eml(subject="via postmark").decode()}
    postmark = httpx.post(f"{base}/ingest/postmark/acme", auth=tuple(BASIC.split(":")), json=postmark_json)
    assert postmark.status_code == 200, postmark.text
    user, password = BASIC.split(":")
    sendgrid = httpx.post(f"{base}/ingest/sendgrid/acme?key={password}", data={
        "envelope": json.dumps({"to": ["inbox@acme.mail.test"], "from": "jean@example.com"}),
        "email": make_eml(subject="via sendgrid").decode(), "charsets": '{"to":"UTF-8"}', "SPF": "pass"})
    assert sendgrid.status_code == 200, sendgrid.text
    for source, subject, rcpt in (("webhook:mailgun", "via mailgun", "support@acme.mail.test"),
                                  ("webhook:postmark", "via postmark", "inbox@acme.mail.test"),
                                  ("webhook:sendgrid", "via sendgrid", "inbox@acme.mail.test")):
        [row] = wait_until(lambda s=source: _done(service.app, s), timeout=20)
        assert (row.subject, row.rcpt_tos, row.mail_from) == (subject, [rcpt], "jean@example.com")
    again = httpx.post(f"{base}/ingest/postmark/acme", auth=(user, password), json=postmark_json)  # a retry
    assert again.json() == postmark.json()  # the same row
    scrape = httpx.get(f"{base}/metrics").text
    assert 'postroom_ingress_messages_total{source="webhook:sendgrid"} 1.0' in scrape


def test_wrong_credentials_and_oversize_bodies_are_refused_before_the_body_is_read(service) -> None:
    _secrets(service.app)
    base = service.http_url
    raw = make_eml(subject="forged")
    assert httpx.post(f"{base}/ingest/mailgun/acme", data=_mailgun_form(raw, "wrong-key")).status_code == 401
    assert httpx.post(f"{base}/ingest/postmark/acme", auth=("postroom", "guess"),
                      json={"RawEmail": raw.decode()}).status_code == 401
    assert httpx.post(f"{base}/ingest/sendgrid/acme?key=guess", data={"email": raw.decode()}).status_code == 401
    assert httpx.post(f"{base}/ingest/postmark/globex", auth=tuple(BASIC.split(":")),
                      json={"RawEmail": raw.decode()}).status_code == 401  # globex has no secret
    assert httpx.post(f"{base}/ingest/other/acme", data={"email": raw.decode()}).status_code == 404
    target = urlsplit(base)
    for credentials, status in ((b"postroom:guess", 401), (BASIC.encode(), 413)):
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
        conn.putrequest("POST", "/ingest/postmark/acme")  # announces 1 GB, sends none of it
        for name, value in {"Authorization": "Basic " + base64.b64encode(credentials).decode(),
                            "Content-Type": "application/json", "Content-Length": str(10**9)}.items():
            conn.putheader(name, value)
        conn.endheaders()
        assert conn.getresponse().status == status
        conn.close()
    with service.app.session() as session:
        assert session.scalar(select(InboundMessage.id)) is None


def test_a_message_that_cannot_be_stored_answers_503_then_200_on_the_provider_s_retry(service) -> None:
    """The blob's shard directory is blocked by a file, so the real write fails: 503 and no row, and the provider's
    retry, once the store is writable again, is stored and processed (the message is too large for the database
    tier, so it goes through the file store)."""
    _secrets(service.app)
    raw = make_eml(subject="stored on retry", message_id="<webhook-503@example.com>",
                   body="0123456789abcdef\n" * 20_000)
    shard = service.app.settings.data_dir / "blobs" / sha256_hex(raw)[:2]
    shard.parent.mkdir(parents=True, exist_ok=True)
    shard.write_bytes(b"not a directory")
    payload = {"FromFull": {"Email": "jean@example.com"}, "To": "inbox@acme.mail.test",
               "OriginalRecipient": "inbox@acme.mail.test", "Subject": "stored on retry", "RawEmail": raw.decode()}
    url, auth = f"{service.http_url}/ingest/postmark/acme", tuple(BASIC.split(":"))
    refused = httpx.post(url, auth=auth, json=payload)
    assert refused.status_code == 503, refused.text
    assert "retry later" in refused.text
    with service.app.session() as session:
        assert session.scalar(select(InboundMessage.id).where(InboundMessage.source == "webhook:postmark")) is None
    shard.unlink()
    stored = httpx.post(url, auth=auth, json=payload)
    assert stored.status_code == 200, stored.text
    [row] = wait_until(lambda: _done(service.app, "webhook:postmark"), timeout=20)
    assert row.subject == "stored on retry"
