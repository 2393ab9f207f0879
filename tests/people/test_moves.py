"""Moving a customer's message through the real CLI: the notice, its language and template, --force, emptied."""

from __future__ import annotations

from email.utils import make_msgid
from pathlib import Path

from postroom.storage import conversation_views
from postroom.testing import wait_until

from .conftest import as_json


def conversation_of(mailer, subject: str, **eml: object) -> tuple[int, int, str]:
    """(message row, conversation id, Message-ID) of a mail Jean sends."""
    mid = make_msgid(domain="example.com")
    row = mailer.mail(subject=subject, message_id=mid, **eml)
    return row, mailer.message(row).conversation_id, mid


def reference(mailer, conversation_id: int) -> str:
    with mailer.service.app.session() as session:
        return conversation_views.get_conversation(session, conversation_id)[0].reference


def test_move_tells_the_customer_in_their_language_and_the_tenant_template(mailer, run, relay, people_settings,
                                                                          tenant_ids) -> None:
    first, kitchen, kitchen_mid = conversation_of(mailer, "Cuisine")
    _, bathroom, _ = conversation_of(mailer, "Salle de bain")
    misfiled, _, misfiled_mid = conversation_of(mailer, "Re: Cuisine", headers={"In-Reply-To": kitchen_mid},
                                                body="Et la douche fuit aussi.\n")
    assert mailer.message(misfiled).conversation_id == kitchen
    contact = mailer.message(first).author_contact_id
    run("contact", "set", str(contact), "--locale", "fr")

    out = run("inbox", "move", str(misfiled), "--to", str(bathroom))
    assert f"moved to conversation {bathroom}" in out and "notice to the customer: outbound" in out
    [notice] = wait_until(lambda: relay.received)
    mail = notice.message
    assert notice.rcpt_tos == ["jean@example.com"]
    assert mail["Subject"] == f"Votre message a été déplacé: Salle de bain [#{reference(mailer, bathroom)}]"
    assert mail["In-Reply-To"] == misfiled_mid and mail["Auto-Submitted"] == "auto-replied"
    text = mail.get_body(("plain",)).get_content()
    assert "« Re: Cuisine »" in text and "fait maintenant partie de cette conversation" in text
    assert "Cuisine" not in mail["Subject"]

    override = Path(people_settings.data_dir) / "templates" / "acme" / "move_notice.txt.j2"
    override.parent.mkdir(parents=True, exist_ok=True)
    override.write_text("Acme custom notice for {{ recipient.name }}: {{ text }}\n")
    moved = as_json(run("inbox", "move", str(first), "--to", str(bathroom), "--json"))[0]
    assert moved["emptied"] is True and moved["notice_outbound_id"] is not None  # the kitchen thread is now empty
    second = wait_until(lambda: relay.received[1:])[0]
    assert second.message.get_body(("plain",)).get_content().startswith("Acme custom notice for Jean Dupont: Votre")


def test_moving_into_another_contacts_conversation_asks_and_tells_nobody(mailer, run, tenant_ids) -> None:
    row, jeans, _ = conversation_of(mailer, "Keys")
    _, piets, _ = conversation_of(mailer, "Parking", sender="Piet Janssens <piet@example.org>")
    jean = mailer.message(row).author_contact_id
    piet = as_json(run("conversations", "show", str(piets), "--json"))[0]["contact_id"]
    refused = run("inbox", "move", str(row), "--to", str(piets), code=1)
    assert refused == (f"error: message {row} is from contact {jean} (jean@example.com) but conversation {piets} is "
                       f"contact {piet} (piet@example.org)'s; confirm with --force (API: \"force\": true)")
    assert mailer.message(row).conversation_id == jeans
    out = run("inbox", "move", str(row), "--to", str(piets), "--force")
    assert "notice" not in out
    assert f"conversation {jeans} has no message left: closed, flagged emptied_by_move" in out
    emptied = as_json(run("conversations", "show", str(jeans), "--json"))[0]
    assert (emptied["status"], emptied["flags"], emptied["messages"]) == ("closed", ["emptied_by_move"], [])
    assert mailer.outbound() == []  # nothing about Piet's conversation went to Jean
