"""``postroom user``, ``reply``, ``note`` and ``outbound`` against a real database and relay."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from postroom import flow
from postroom.app import App
from postroom.cli import cli
from postroom.errors import PostroomError
from postroom.model import Envelope
from postroom.outbound import delivery
from postroom.storage import conversation_views, staff
from postroom.storage.intake import IntakeItem, store_batch
from postroom.testing import make_eml

INBOX = "inbox@acme.mail.test"


@pytest.fixture
def run(app, fast, tenant_ids, monkeypatch):
    for name in ("data_dir", "database_url", "mail_domain", "outbound_url"):
        monkeypatch.setenv(f"POSTROOM_{name.upper()}", str(getattr(fast, name)))

    def invoke(*args: str, code: int = 0) -> str:
        result = CliRunner().invoke(cli, list(args), catch_exceptions=code != 0)
        if isinstance(result.exception, PostroomError):
            return f"error: {result.exception}"
        assert result.exit_code == code, result.output
        return result.output

    return invoke


def test_user_reply_note_and_outbound_views(run, app, fast, tenant_ids, relay, tmp_path) -> None:
    signature = tmp_path / "sig.txt"
    signature.write_text("Jan de Vries\nKlantenservice\n")
    html = tmp_path / "sig.html"
    html.write_text("<p>Jan de <b>Vries</b></p>")
    assert "added to acme" in run("user", "add", "acme", "--email", "Jan@Acme.example", "--name", "Jan de Vries",
                                  "--signature-file", str(signature), "--signature-html-file", str(html))
    [listed] = [json.loads(x) for x in run("user", "list", "acme", "--json").splitlines()]
    assert (listed["email"], listed["signature_text"]) == ("jan@acme.example", "Jan de Vries\nKlantenservice")
    assert "text+html" in run("user", "list", "acme")
    assert run("user", "add", "acme", "--email", "jan@acme.example", "--name", "X", code=1).startswith("error:")

    [[row]] = store_batch(app.sessions, app.blobs, [IntakeItem(
        make_eml(sender="Piet <piet@example.nl>", subject="Lekkage"), Envelope("piet@example.nl", (INBOX,)),
        {tenant_ids["acme"]: (INBOX,)})])
    assert flow.process_inbound(app, row) == "done"
    conversation = json.loads(run("conversations", "list", "--tenant", "acme", "--json").splitlines()[0])["id"]

    text = tmp_path / "reply.txt"
    text.write_text("Beste Piet,\n\nDe loodgieter komt dinsdag.\n")
    attachment = tmp_path / "offerte.pdf"
    attachment.write_bytes(b"%PDF-1.4 offerte")
    queued = json.loads(run("reply", str(conversation), "--as", "jan@acme.example", "--text", str(text),
                            "--attach", str(attachment), "--json"))
    outbound_id = queued["outbound"]["id"]
    secret = tmp_path / "note.txt"
    secret.write_text("Piet belt elke dag, @anna@acme.example kun jij bellen?")
    assert "added to acme" in run("user", "add", "acme", "--email", "anna@acme.example", "--name", "Anna Smit")
    assert "note" in run("note", str(conversation), "--as", "jan@acme.example", "--text", str(secret))
    with app.session() as session:
        [anna] = [u for u in staff.list_users(session, tenant_ids["acme"]) if u.email == "anna@acme.example"]
        mentions = [e for e in conversation_views.events(session, tenant_ids["acme"]) if e.kind == "mention"]
    assert [(e.recipient_type, e.recipient_id, e.conversation_id) for e in mentions] == [("user", anna.id,
                                                                                          conversation)]
    refused = run("reply", str(conversation), "--as", "nobody@acme.example", "--text", str(text), code=1)
    assert refused.startswith("error: no active staff user")

    [line] = [json.loads(x) for x in run("outbound", "list", "--status", "queued", "--json").splitlines()]
    assert (line["id"], line["status"], line["recipients"][0]["address"]) == (outbound_id, "queued",
                                                                              "piet@example.nl")
    sender = App.open(fast)
    assert delivery.deliver(sender, outbound_id).status == "sent"
    sender.close()
    shown = run("outbound", "show", str(outbound_id), "--body")
    assert "status:           sent" in shown and "De loodgieter komt dinsdag." in shown and "Q0001" in shown
    assert "Piet belt" not in relay.received[0].data.decode("ascii", "replace")
    assert "retry needs one of" in run("outbound", "retry", str(outbound_id), code=1)
    assert run("outbound", "list", "--status", "nonsense", code=2)
