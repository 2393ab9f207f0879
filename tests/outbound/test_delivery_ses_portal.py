"""SES through moto's standalone server (boto3 over HTTP on 127.0.0.1) and the signed portal webhook."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import urllib.request
from collections.abc import Iterator

import boto3
import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.server import ThreadedMotoServer
from moto.ses.models import ses_backends

from postroom.outbound import compose, delivery
from postroom.outbound.transports import portal
from postroom.storage import outbound as store

REGION = "eu-west-1"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def moto_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    port = _port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST")).close()
    yield url
    server.stop()


def ses_sent() -> list:
    """What moto's SES took (the server runs in this process, so its backend is readable)."""
    return list(ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages)


def record(app, outbound_id: int) -> store.OutboundRecord:
    with app.session() as session:
        return store.get_outbound(session, outbound_id)


def test_ses_sends_the_raw_message(outbound_app, make_context, tenant_ids, moto_url, attachment_file) -> None:
    boto3.client("sesv2", region_name=REGION, endpoint_url=moto_url).create_email_identity(
        EmailIdentity="acme.mail.test")
    outbound_app.settings = outbound_app.settings.replace(outbound_url=f"ses://{REGION}?endpoint_url={moto_url}")
    refs = compose.attach_paths(outbound_app, [attachment_file])
    queued = compose.queue_message(outbound_app, make_context(attachments=refs), tenant_id=tenant_ids["acme"])

    assert delivery.deliver(outbound_app, queued.id).status == "sent"

    [sent] = ses_sent()
    msg = email.message_from_string(sent.raw_data, policy=email.policy.default)
    assert msg["Message-ID"] == queued.message_id
    assert msg["Subject"] == "Re: Leak in the bathroom [#7K3M9Q]"
    assert msg.get_body(("plain",)).get_content().count("After-sales, Acme Builders") == 1
    assert [p.get_filename() for p in msg.iter_attachments()] == ["plan étage.pdf"]
    done = record(outbound_app, queued.id)
    assert (done.status, done.transport, done.provider_id) == ("sent", "ses", sent.id)
    assert delivery.deliver(outbound_app, queued.id).status == "skipped"
    assert len(ses_sent()) == 1


def test_ses_refusal_of_an_unverified_sender_is_permanent(outbound_app, make_context, tenant_ids,
                                                          moto_url) -> None:
    outbound_app.settings = outbound_app.settings.replace(outbound_url=f"ses://{REGION}?endpoint_url={moto_url}")
    queued = compose.queue_message(outbound_app, make_context(), tenant_id=tenant_ids["acme"])
    assert delivery.deliver(outbound_app, queued.id).status == "failed"
    assert "MessageRejected" in (record(outbound_app, queued.id).last_error or "")
    assert ses_sent() == []


def test_ses_unreachable_is_temporary(outbound_app, make_context, tenant_ids, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    outbound_app.settings = outbound_app.settings.replace(
        outbound_url=f"ses://{REGION}?endpoint_url=http://127.0.0.1:{_port()}")
    queued = compose.queue_message(outbound_app, make_context(), tenant_id=tenant_ids["acme"])
    outcome = delivery.deliver(outbound_app, queued.id)
    assert outcome.status == "deferred" and outcome.retry_in is not None
    assert record(outbound_app, queued.id).next_attempt_at is not None


def portal_app(app, hook):
    app.settings = app.settings.replace(portal_webhook_url=hook.url, portal_webhook_secret="s3cret")
    return app


def test_portal_notification_is_signed_and_carries_the_public_content(outbound_app, make_context, tenant_ids,
                                                                       webhook) -> None:
    app = portal_app(outbound_app, webhook)
    queued = compose.queue_message(app, make_context(), tenant_id=tenant_ids["acme"], channel="portal")
    assert delivery.deliver(app, queued.id).status == "sent"

    [(headers, body)] = webhook.requests
    assert portal.verify("s3cret", headers["X-Postroom-Timestamp"], body, headers["X-Postroom-Signature"])
    assert not portal.verify("other", headers["X-Postroom-Timestamp"], body, headers["X-Postroom-Signature"])
    assert not portal.verify("s3cret", headers["X-Postroom-Timestamp"], body + b" ", headers["X-Postroom-Signature"])
    assert not portal.verify("s3cret", str(int(headers["X-Postroom-Timestamp"]) - 3600), body,
                             portal.sign("s3cret", str(int(headers["X-Postroom-Timestamp"]) - 3600), body))
    assert headers["Idempotency-Key"] == queued.message_id
    event = json.loads(body)
    assert event["kind"] == "reply" and event["tenant"] == "acme"
    assert event["recipients"] == [{"name": "Zoë Müller", "email": "zoe@example.com"}]
    assert "The plumber comes on Tuesday." in event["text"] and event["text"].count("After-sales") == 1
    assert "Élodie Martin sent you a new message." in event["text"]
    done = record(app, queued.id)
    assert (done.status, done.transport, done.provider_id) == ("sent", "portal", "evt-1")


def test_portal_retries_5xx_and_429_but_fails_on_4xx(outbound_app, make_context, tenant_ids, webhook) -> None:
    app = portal_app(outbound_app, webhook)
    webhook.answers = [503, 429, 200, 400]
    first = compose.queue_message(app, make_context(), tenant_id=tenant_ids["acme"], channel="portal")
    assert delivery.deliver(app, first.id).status == "deferred"
    assert delivery.deliver(app, first.id).status in ("deferred", "skipped")
    from postroom.testing import wait_until

    wait_until(lambda: delivery.deliver(app, first.id).status == "sent", timeout=5)
    keys = {h["Idempotency-Key"] for h, _ in webhook.requests}
    assert keys == {first.message_id}, "every retry carries the same idempotency key"
    second = compose.queue_message(app, make_context(), tenant_id=tenant_ids["acme"], channel="portal")
    assert delivery.deliver(app, second.id).status == "failed"


def test_portal_is_resent_after_a_worker_died_past_the_commit_point(outbound_app, make_context, tenant_ids,
                                                                     webhook) -> None:
    """The webhook is idempotent by Message-ID, so a crash after the request is simply re-sent."""
    from datetime import UTC, datetime, timedelta

    app = portal_app(outbound_app, webhook)
    queued = compose.queue_message(app, make_context(), tenant_id=tenant_ids["acme"], channel="portal")
    with app.session() as session:
        store.claim(session, queued.id, lease=timedelta(seconds=-1))
        store.mark_phase(session, queued.id, "committing", lease=timedelta(seconds=-1))
    assert delivery.deliver(app, queued.id).status == "sent"
    assert len(webhook.requests) == 1
    assert record(app, queued.id).sent_at <= datetime.now(UTC)
