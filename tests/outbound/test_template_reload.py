"""Tenant template overrides added, changed or removed while the service runs are used from the next message on."""

from __future__ import annotations

import os
import smtplib
from pathlib import Path

from postroom.outbound import actions
from postroom.service import Service
from postroom.storage import conversation_views
from postroom.testing import make_eml, wait_until

STAFF = "elodie@acme.example"


def _write(path: Path, text: str) -> None:
    """Write and move the mtime forward, so a coarse file-system clock cannot hide the change."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_an_override_takes_effect_at_the_next_reply(running: Service, customer: smtplib.SMTP, relay) -> None:
    customer.sendmail("zoe@example.com", ["inbox@acme.mail.test"],
                      make_eml(sender="Zoë <zoe@example.com>", subject="Leak", body="Water from the ceiling."))

    def conversation_id() -> int | None:
        with running.app.session() as session:
            found = conversation_views.list_conversations(session, "acme")
        return found[0].id if found else None

    conv = wait_until(conversation_id)

    def reply(text: str) -> str:
        before = len(relay.received)
        actions.reply(running.app, conv, STAFF, text, dispatch=running.pipeline.dispatch_outbound)
        wait_until(lambda: len(relay.received) > before)
        return relay.received[-1].message.get_body(("plain",)).get_content()

    assert "Tuesday" in reply("The plumber comes on Tuesday.")
    folder = running.app.settings.data_dir / "templates" / "acme"
    folder.mkdir(parents=True, exist_ok=True)
    override = folder / "reply.txt.j2"
    _write(override, "ACME OVERRIDE ONE\n{{ text }}\n")
    assert reply("Wednesday then.").startswith("ACME OVERRIDE ONE")
    _write(override, "ACME OVERRIDE TWO\n{{ text }}\n")
    assert reply("Thursday.").startswith("ACME OVERRIDE TWO")
    override.unlink()
    assert "OVERRIDE" not in reply("Friday.")
