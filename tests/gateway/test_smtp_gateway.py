"""The SMTP gateway end to end: a real smtplib client against the real server on 127.0.0.1."""

from __future__ import annotations

import smtplib
import threading

import pytest
from sqlalchemy import select, text

from postroom.service import Service
from postroom.storage import inbound
from postroom.storage.blobs import sha256_hex
from postroom.storage.tables import InboundMessage
from postroom.testing import make_eml, wait_until

SENDER = "jean@example.com"


def rows(service: Service) -> list[InboundMessage]:
    with service.app.session() as session:
        return list(session.scalars(select(InboundMessage).order_by(InboundMessage.id)))


def test_accepted_mail_is_stored_with_exact_bytes_and_processed(service, smtp):
    raw = make_eml(subject="Tiles for unit 4B", body="Bonjour,\n\n.leading dot stays\nÉté\n")
    client = smtp()
    code, _ = client.ehlo("client.example.com")
    assert code == 250
    refused = client.sendmail(SENDER, ["inbox@acme.mail.test"], raw)
    assert refused == {}
    [row] = rows(service)
    assert service.app.blobs.get(row.sha256) == raw
    assert row.sha256 == sha256_hex(raw)
    assert (row.mail_from, row.rcpt_tos, row.client_ip, row.helo) == (
        SENDER, ["inbox@acme.mail.test"], "127.0.0.1", "client.example.com")
    done = wait_until(lambda: [r for r in rows(service) if r.status == "done"])
    assert done[0].subject == "Tiles for unit 4B"
    assert done[0].sender == SENDER


def test_ehlo_advertises_size_8bitmime_and_smtputf8(service, smtp):
    code, reply = smtp().ehlo()
    features = reply.decode().upper()
    assert code == 250
    assert f"SIZE {service.settings.max_message_size}" in features
    assert "8BITMIME" in features and "SMTPUTF8" in features


@pytest.mark.parametrize(("rcpt", "expected_code", "expected_text"), [
    ("someone@gmail.com", 550, b"5.7.1"),
    ("inbox@mail.test.evil.com", 550, b"5.7.1"),
    ("nobody@acme.mail.test", 550, b"5.1.1"),
    ("inbox@unknown-tenant.mail.test", 550, b"5.1.1"),
])
def test_recipients_that_are_not_ours_are_refused_at_rcpt(service, smtp, rcpt, expected_code, expected_text):
    client = smtp()
    client.ehlo()
    client.mail(SENDER)
    code, reply = client.rcpt(rcpt)
    assert code == expected_code
    assert expected_text in reply
    assert rows(service) == []


def test_alias_and_reply_address_are_accepted(service, smtp):
    client = smtp()
    client.ehlo()
    client.mail(SENDER)
    assert client.rcpt("support@acme.mail.test")[0] == 250
    assert client.rcpt("reply+abc123@acme.mail.test")[0] == 250
    assert client.rcpt("Inbox@ACME.mail.test")[0] == 250


def test_oversize_message_is_refused_with_552(settings, tenant_ids):
    svc = Service(settings.replace(max_message_size=2000)).start()
    try:
        client = smtplib.SMTP("127.0.0.1", svc.smtp_port, timeout=10)
        with pytest.raises(smtplib.SMTPSenderRefused) as declared:
            client.sendmail(SENDER, ["inbox@acme.mail.test"], make_eml(body="x" * 5000))
        assert declared.value.smtp_code == 552
        assert b"5.3.4" in declared.value.smtp_error
        # A client that does not declare SIZE is stopped at the end of DATA.
        client.ehlo()
        client.mail(SENDER)
        client.rcpt("inbox@acme.mail.test")
        code, reply = client.data(make_eml(body="y" * 5000))
        assert (code, reply[:5]) == (552, b"5.3.4")
        client.quit()
        assert rows(svc) == []
    finally:
        svc.stop()


def test_too_many_recipients_get_452(settings, tenant_ids):
    svc = Service(settings.replace(max_recipients=2)).start()
    try:
        client = smtplib.SMTP("127.0.0.1", svc.smtp_port, timeout=10)
        client.ehlo()
        client.mail(SENDER)
        assert client.rcpt("inbox@acme.mail.test")[0] == 250
        assert client.rcpt("support@acme.mail.test")[0] == 250
        code, reply = client.rcpt("inbox@globex.mail.test")
        assert (code, reply[:5]) == (452, b"4.5.3")
        client.quit()
    finally:
        svc.stop()


def test_one_message_for_two_tenants_gives_one_row_each(service, smtp):
    raw = make_eml(to="inbox@acme.mail.test, inbox@globex.mail.test")
    smtp().sendmail(SENDER, ["inbox@acme.mail.test", "support@acme.mail.test", "inbox@globex.mail.test"], raw)
    stored = rows(service)
    assert sorted((r.tenant_id, tuple(r.rcpt_tos)) for r in stored) == sorted([
        (service.app.directory().slugs["acme"], ("inbox@acme.mail.test", "support@acme.mail.test")),
        (service.app.directory().slugs["globex"], ("inbox@globex.mail.test",)),
    ])
    assert len({r.sha256 for r in stored}) == 1


def test_a_retried_delivery_of_the_same_bytes_is_stored_once(service, smtp):
    raw = make_eml(message_id="<retry-1@example.com>")
    client = smtp()
    client.sendmail(SENDER, ["inbox@acme.mail.test"], raw)
    client.sendmail(SENDER, ["inbox@acme.mail.test"], raw)
    assert len(rows(service)) == 1


def test_unwritable_blob_store_answers_451_and_keeps_no_row(service, smtp):
    """A message too large for the database tier, so it must go through the (broken) file store."""
    raw = make_eml(subject="blob store will fail", body="0123456789abcdef\n" * (service.settings.inline_blob_max // 16))
    key = sha256_hex(raw)
    blocker = service.settings.data_dir / "blobs" / key[:2]
    blocker.write_bytes(b"a file where the blob folder should be")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        smtp().sendmail(SENDER, ["inbox@acme.mail.test"], raw)
    assert refused.value.smtp_code == 451
    assert refused.value.smtp_error.startswith(b"4.3.0")
    assert rows(service) == []


FAIL_INSERTS = {
    "sqlite": ["CREATE TRIGGER fail_inserts BEFORE INSERT ON inbound_messages "
               "BEGIN SELECT RAISE(ABORT, 'simulated database failure'); END"],
    "postgresql": [
        "CREATE FUNCTION fail_inserts() RETURNS trigger AS $$ BEGIN "
        "RAISE EXCEPTION 'simulated database failure'; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER fail_inserts BEFORE INSERT ON inbound_messages FOR EACH ROW EXECUTE FUNCTION fail_inserts()",
    ],
}
UNDO_FAIL_INSERTS = {
    "sqlite": ["DROP TRIGGER fail_inserts"],
    "postgresql": ["DROP TRIGGER fail_inserts ON inbound_messages", "DROP FUNCTION fail_inserts()"],
}


def _run_sql(service: Service, statements: list[str]) -> None:
    with service.app.engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


def test_database_failure_answers_451_and_keeps_no_row(service, smtp):
    dialect = service.app.engine.dialect.name
    _run_sql(service, FAIL_INSERTS[dialect])
    try:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp().sendmail(SENDER, ["inbox@acme.mail.test"], make_eml())
        assert refused.value.smtp_code == 451
    finally:
        _run_sql(service, UNDO_FAIL_INSERTS[dialect])
    assert rows(service) == []
    # Once the database works again the same client delivers normally.
    assert smtp().sendmail(SENDER, ["inbox@acme.mail.test"], make_eml()) == {}


def test_restart_reenqueues_unfinished_rows_and_finishes_each_once(settings, tenant_ids):
    receiver = Service(settings, run_workers=False).start()
    try:
        client = smtplib.SMTP("127.0.0.1", receiver.smtp_port, timeout=10)
        for n in range(3):
            client.sendmail(SENDER, ["inbox@acme.mail.test"], make_eml(subject=f"waiting {n}"))
        client.quit()
        assert [r.status for r in rows(receiver)] == ["pending"] * 3
        # A worker that died mid-stage leaves a row "processing" with an expired lease.
        with receiver.app.session() as session:
            first = rows(receiver)[0].id
            inbound.claim(session, first)
            session.execute(InboundMessage.__table__.update().where(InboundMessage.id == first)
                            .values(lease_until=InboundMessage.received_at))
    finally:
        receiver.stop()
    restarted = Service(settings, run_smtp=False).start()
    try:
        wait_until(lambda: all(r.status == "done" for r in rows(restarted)))
        restarted.pipeline.join()
        final = rows(restarted)
        assert [r.status for r in final] == ["done"] * 3
        assert [r.attempts for r in final] == [2, 1, 1]
        assert sorted(r.subject for r in final) == ["waiting 0", "waiting 1", "waiting 2"]
    finally:
        restarted.stop()


def test_a_hanging_broker_does_not_stall_smtp_sessions(settings, tenant_ids):
    release = threading.Event()
    handed_over: list[int] = []

    def hanging_dispatch(ids):
        handed_over.extend(ids)
        release.wait(30)

    svc = Service(settings, run_workers=False, dispatch=hanging_dispatch).start()
    try:
        client = smtplib.SMTP("127.0.0.1", svc.smtp_port, timeout=5)
        for n in range(3):
            assert client.sendmail(SENDER, ["inbox@acme.mail.test"], make_eml(subject=f"while stuck {n}")) == {}
        client.quit()
        assert len(rows(svc)) == 3
        wait_until(lambda: len(handed_over) == 3)
    finally:
        release.set()
        svc.stop()
