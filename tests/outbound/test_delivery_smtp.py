"""Delivery over real SMTP to an aiosmtpd relay on 127.0.0.1: content, retries, failures, at most once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from postroom import tokens
from postroom.app import App
from postroom.outbound import compose, delivery
from postroom.service import Service
from postroom.settings import Settings
from postroom.storage import outbound as store
from postroom.storage import tenants
from postroom.testing import wait_until


def record(app: App, outbound_id: int) -> store.OutboundRecord:
    with app.session() as session:
        return store.get_outbound(session, outbound_id)


def attempts(app: App, outbound_id: int) -> list[store.AttemptRecord]:
    with app.session() as session:
        return store.attempts_of(session, outbound_id)


def test_reply_arrives_with_headers_parts_signature_once_and_attachment(outbound_app, make_context, relay,
                                                                         tenant_ids, attachment_file) -> None:
    refs = compose.attach_paths(outbound_app, [attachment_file])
    queued = compose.queue_message(outbound_app, make_context(attachments=refs), tenant_id=tenant_ids["acme"])
    assert queued.status == "queued" and relay.transactions == 0, "the row is committed before any attempt"

    outcome = delivery.deliver(outbound_app, queued.id)

    assert outcome.status == "sent"
    [got] = relay.received
    with outbound_app.session() as session:
        secret = tenants.tenant_secret(session, tenant_ids["acme"])
    assert got.mail_from.startswith("bounce+") and got.rcpt_tos == ["zoe@example.com"]  # its own bounce address
    assert tokens.verify_bounce_token(secret, tokens.token_of(got.mail_from, "bounce+")) == queued.id
    msg = got.message
    assert msg["Message-ID"] == queued.message_id
    assert msg["Subject"] == "Re: Leak in the bathroom [#7K3M9Q]"
    assert msg["From"].addresses[0].display_name == "Élodie Martin via Acme Builders"
    assert msg["Reply-To"].addresses[0].addr_spec == "reply+tok@acme.mail.test"
    assert msg["In-Reply-To"] == "<c1@example.com>"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert text.count("After-sales, Acme Builders") == 1
    assert html.count("After-sales") == 1 and "<b>Élodie Martin</b>" in html
    [part] = list(msg.iter_attachments())
    assert part.get_filename() == "plan étage.pdf"
    assert part.get_content() == attachment_file.read_bytes()
    done = record(outbound_app, queued.id)
    assert (done.status, done.provider_id, done.transport) == ("sent", "Q0001", "smtp")
    assert [r.status for r in done.recipients] == ["sent"]
    assert [(a.outcome, a.code) for a in attempts(outbound_app, queued.id)] == [("sent", 250)]


def test_a_sent_message_is_never_sent_again(outbound_app, make_context, relay, tenant_ids) -> None:
    queued = compose.queue_message(outbound_app, make_context(), tenant_id=tenant_ids["acme"])
    assert delivery.deliver(outbound_app, queued.id).status == "sent"
    assert delivery.deliver(outbound_app, queued.id).status == "skipped"
    assert len(relay.received) == 1 and relay.transactions == 1


def test_550_fails_at_once(outbound_app, make_context, relay, tenant_ids) -> None:
    relay.script["RCPT"] = ["550 5.1.1 <zoe@example.com>: Recipient address rejected"]
    queued = compose.queue_message(outbound_app, make_context(), tenant_id=tenant_ids["acme"])
    assert delivery.deliver(outbound_app, queued.id).status == "failed"
    done = record(outbound_app, queued.id)
    assert done.status == "failed" and "Recipient address rejected" in (done.last_error or "")
    assert done.recipients[0].status == "failed"
    assert [(a.outcome, a.code) for a in attempts(outbound_app, queued.id)] == [("failed", 550)]
    assert delivery.deliver(outbound_app, queued.id).status == "skipped"
    assert relay.received == []


def test_lifetime_expiry_turns_a_deferral_into_failure(outbound_app, make_context, relay, tenant_ids) -> None:
    outbound_app.settings = outbound_app.settings.replace(outbound_lifetime_seconds=0)
    relay.script["DATA"] = ["451 4.3.0 Try again later"]
    queued = compose.queue_message(outbound_app, make_context(), tenant_id=tenant_ids["acme"])
    assert delivery.deliver(outbound_app, queued.id).status == "failed"
    assert "lifetime expired" in (record(outbound_app, queued.id).last_error or "")


def test_connection_lost_after_the_final_dot_is_unknown_and_not_resent(outbound_app, make_context, relay,
                                                                        tenant_ids) -> None:
    relay.script["DATA"] = ["drop"]
    queued = compose.queue_message(outbound_app, make_context(), tenant_id=tenant_ids["acme"])
    assert delivery.deliver(outbound_app, queued.id).status == "unknown"
    assert delivery.deliver(outbound_app, queued.id).status == "skipped"
    assert relay.transactions == 1


@pytest.fixture
def workers(fast: Settings, outbound_app: App) -> Iterator[Service]:
    svc = Service(fast, run_smtp=False).start()
    if fast.broker_url:
        svc.pipeline.broker.flush_all()
    yield svc
    svc.stop()


@pytest.mark.parametrize("stage, script", [
    ("DATA", ["451 4.3.0 Try again later", "451 4.3.0 Try again later"]),
    ("MAIL", ["drop"]),
    ("RCPT", ["421 4.7.0 Too busy, try later"]),
])
def test_temporary_failures_retry_with_backoff_through_the_queue(workers, make_context, relay, tenant_ids,
                                                                  stage, script) -> None:
    app = workers.app
    relay.script[stage] = list(script)
    queued = compose.queue_message(app, make_context(), tenant_id=tenant_ids["acme"],
                                   dispatch=workers.pipeline.dispatch_outbound)
    wait_until(lambda: record(app, queued.id).status == "sent", timeout=20)
    outcomes = [a.outcome for a in attempts(app, queued.id)]
    assert outcomes == ["deferred"] * len(script) + ["sent"]
    assert len(relay.received) == 1
    assert record(app, queued.id).attempts == len(script) + 1


def _subprocess_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "POSTROOM_DATA_DIR": str(settings.data_dir), "POSTROOM_DATABASE_URL": settings.resolved_database_url,
        "POSTROOM_MAIL_DOMAIN": settings.mail_domain, "POSTROOM_OUTBOUND_URL": settings.outbound_url,
        "POSTROOM_OUTBOUND_LEASE_SECONDS": str(settings.outbound_lease_seconds),
    })
    return env


def _deliver_in_subprocess(settings: Settings, outbound_id: int) -> subprocess.Popen:
    code = ("import sys; from postroom.app import App; from postroom.settings import load_settings; "
            "from postroom.outbound.delivery import deliver; "
            "deliver(App.open(load_settings(), migrate=False), int(sys.argv[1]))")
    return subprocess.Popen([sys.executable, "-c", code, str(outbound_id)], env=_subprocess_env(settings))


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


def test_worker_killed_before_the_final_dot_is_resent_once(outbound_app, make_context, relay, tenant_ids) -> None:
    relay.script["RCPT"] = ["hang"]
    queued = compose.queue_message(outbound_app, make_context(), tenant_id=tenant_ids["acme"])
    proc = _deliver_in_subprocess(outbound_app.settings, queued.id)
    assert relay.event("RCPT").wait(20)
    _kill(proc)
    relay.release.set()
    assert record(outbound_app, queued.id).phase == "started"
    assert delivery.deliver(outbound_app, queued.id).status == "skipped", "the dead worker's lease still holds"
    wait_until(lambda: delivery.deliver(outbound_app, queued.id).status == "sent", timeout=10, interval=0.2)
    assert len(relay.received) == 1
    assert record(outbound_app, queued.id).attempts == 2


def test_worker_killed_after_the_final_dot_is_never_sent_twice(outbound_app, make_context, relay,
                                                                tenant_ids) -> None:
    relay.script["DATA"] = ["hang"]
    queued = compose.queue_message(outbound_app, make_context(), tenant_id=tenant_ids["acme"])
    proc = _deliver_in_subprocess(outbound_app.settings, queued.id)
    assert relay.event("DATA").wait(20)
    _kill(proc)
    relay.release.set()
    wait_until(lambda: relay.received, timeout=5)
    assert record(outbound_app, queued.id).phase == "committing"
    wait_until(lambda: delivery.deliver(outbound_app, queued.id).status == "unknown", timeout=10, interval=0.2)
    assert len(relay.received) == 1 and relay.transactions == 1
    done = record(outbound_app, queued.id)
    assert done.status == "unknown" and done.message_id in (done.last_error or "")
    with outbound_app.session() as session:
        store.requeue(session, queued.id, lifetime=store.timedelta(days=1))
    assert delivery.deliver(outbound_app, queued.id).status == "sent", "an operator may decide to send again"
