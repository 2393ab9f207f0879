"""A CLI action reaches the running service's workers as soon as it is committed, not at the next sweep.

The sweep re-enqueues only rows idle for 30 s, so mail leaving within a few
seconds of the command shows the wake-up path (the broker, or the serve
process's wake-up socket on the embedded default) carried it.
"""

from __future__ import annotations

import smtplib
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from postroom import flow
from postroom.cli import cli
from postroom.model import Envelope
from postroom.queue.actors import SWEEP_IDLE
from postroom.service import Service
from postroom.storage import conversation_views, inbound, staff
from postroom.storage import outbound as store
from postroom.storage.intake import IntakeItem, store_batch
from postroom.testing import make_eml, wait_until

STAFF = "elodie@acme.example"
PROMPT = 5.0  # seconds; well below SWEEP_IDLE


@pytest.fixture
def run(running: Service, monkeypatch):  # type: ignore[no-untyped-def]
    settings = running.settings
    for name in ("data_dir", "database_url", "mail_domain", "outbound_url", "broker_url", "broker_namespace"):
        monkeypatch.setenv(f"POSTROOM_{name.upper()}", str(getattr(settings, name) or ""))

    def invoke(*args: str) -> str:
        result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    return invoke


def test_cli_reply_and_retry_leave_within_seconds(running: Service, customer: smtplib.SMTP, relay, run,
                                                  tmp_path: Path) -> None:
    assert SWEEP_IDLE.total_seconds() > PROMPT
    customer.sendmail("zoe@example.com", ["inbox@acme.mail.test"],
                      make_eml(sender="Zoë <zoe@example.com>", subject="Leak", body="Water from the ceiling."))

    def conversation_id() -> int | None:
        with running.app.session() as session:
            found = conversation_views.list_conversations(session, "acme")
        return found[0].id if found else None

    conv = wait_until(conversation_id)
    text = tmp_path / "reply.txt"
    text.write_text("The plumber comes on Tuesday.\n")
    relay.script["DATA"] = ["550 5.1.1 mailbox unavailable"]
    started = time.monotonic()
    out = run("reply", str(conv), "--as", STAFF, "--text", str(text))
    assert "enqueued" in out, out
    outbound_id = int(out.split()[1])
    wait_until(lambda: _status(running, outbound_id) == "failed", timeout=PROMPT)
    run("outbound", "retry", str(outbound_id))
    wait_until(lambda: relay.received, timeout=PROMPT)
    assert _status(running, outbound_id) == "sent"
    assert time.monotonic() - started < 2 * PROMPT


def test_cli_queue_retry_is_processed_within_seconds(running: Service, customer: smtplib.SMTP, run) -> None:
    customer.sendmail("jean@example.com", ["inbox@acme.mail.test"], make_eml(subject="Retry me"))

    def row() -> int | None:
        with running.app.session() as session:
            found = [r.id for r in inbound.list_inbound(session) if r.status == "done"]
        return found[0] if found else None

    row_id = wait_until(row)
    with running.app.session() as session:  # as a run that ran out of attempts leaves it
        inbound.set_status(session, row_id, "failed", allowed_from=("done",))
    run("queue", "retry", str(row_id))
    wait_until(lambda: _inbound(running, row_id) == "done", timeout=PROMPT)


def _inbound(svc: Service, row: int) -> str:
    with svc.app.session() as session:
        return inbound.get_inbound(session, row).status


def _status(svc: Service, outbound_id: int) -> str:
    with svc.app.session() as session:
        return store.get_outbound(session, outbound_id).status


def test_without_a_running_service_the_cli_says_when_it_will_be_sent(app, fast, tenant_ids, monkeypatch,
                                                                     tmp_path: Path) -> None:
    for name in ("data_dir", "database_url", "mail_domain", "outbound_url"):
        monkeypatch.setenv(f"POSTROOM_{name.upper()}", str(getattr(fast, name)))
    monkeypatch.setenv("POSTROOM_BROKER_URL", "")
    with app.session() as session:
        staff.add_user(session, "acme", email=STAFF, name="Élodie")
    inbox = "inbox@acme.mail.test"
    [[row]] = store_batch(app.sessions, app.blobs, [IntakeItem(make_eml(), Envelope("jean@example.com", (inbox,)),
                                                              {tenant_ids["acme"]: (inbox,)})])
    assert flow.process_inbound(app, row) == "done"
    with app.session() as session:
        conv = conversation_views.list_conversations(session, "acme")[0].id
    text = tmp_path / "reply.txt"
    text.write_text("Hello\n")
    result = CliRunner().invoke(cli, ["reply", str(conv), "--as", STAFF, "--text", str(text)])
    assert result.exit_code == 0 and "no postroom serve is running" in result.output, result.output
