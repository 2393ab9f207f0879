"""``postroom conversations`` and ``postroom inbox`` against a real database."""

from __future__ import annotations

import json
from email.utils import make_msgid

import pytest
from click.testing import CliRunner

from postroom import flow
from postroom.cli import cli
from postroom.errors import PostroomError
from postroom.model import Envelope
from postroom.storage.intake import IntakeItem, store_batch
from postroom.testing import make_eml

INBOX = "inbox@acme.mail.test"


@pytest.fixture
def run(app, settings, tenant_ids, monkeypatch):
    monkeypatch.setenv("POSTROOM_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("POSTROOM_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("POSTROOM_MAIL_DOMAIN", settings.mail_domain)

    def invoke(*args: str, code: int = 0) -> str:
        result = CliRunner().invoke(cli, list(args), catch_exceptions=code != 0)
        if isinstance(result.exception, PostroomError):
            return f"error: {result.exception}"  # what postroom.cli.main prints, with exit code 1
        assert result.exit_code == code, result.output
        return result.output

    return invoke


@pytest.fixture
def deliver(app, tenant_ids):
    def send(raw: bytes) -> None:
        [[row]] = store_batch(app.sessions, app.blobs, [IntakeItem(raw, Envelope("x@y", (INBOX,)),
                                                                   {tenant_ids["acme"]: (INBOX,)})])
        assert flow.process_inbound(app, row) == "done"

    return send


def test_list_show_dump(run, deliver) -> None:
    root, reply, other = (make_msgid(domain="x.example") for _ in range(3))
    deliver(make_eml(message_id=root, subject="Clés"))
    deliver(make_eml(message_id=reply, subject="Re: Clés", headers={"References": root}))
    deliver(make_eml(sender="anna@example.org", message_id=other, subject="Parking"))
    lines = [json.loads(line) for line in run("conversations", "dump", "--tenant", "acme", "--json").splitlines()]
    assert [(d["subject"], d["message_ids"], d["status"]) for d in lines] == \
        [("Clés", [root, reply], "open"), ("Parking", [other], "open")]
    assert set(lines[0]) == {"id", "reference", "subject", "status", "contact", "message_ids"}
    assert lines[0]["contact"] == "jean@example.com"
    table = run("conversations", "list", "--tenant", "acme")
    assert "Clés" in table and "Parking" in table and table.index("Parking") < table.index("Clés")
    listed = [json.loads(x) for x in run("conversations", "list", "--tenant", "acme", "--json").splitlines()]
    assert [c["message_count"] for c in listed] == [1, 2]
    assert run("conversations", "list", "--tenant", "acme", "--status", "closed").strip() == "no conversations"
    shown = json.loads(run("conversations", "show", str(lines[0]["id"]), "--json"))
    assert [m["message_id"] for m in shown["messages"]] == [root, reply]
    assert "When is the key handover?" in run("conversations", "show", str(lines[0]["id"]))
    assert run("conversations", "show", "999", code=1).startswith("error: no conversation 999")


def test_inbox_list_and_move(run, deliver) -> None:
    root, fwd = make_msgid(domain="x.example"), make_msgid(domain="acme.example")
    deliver(make_eml(message_id=root, subject="Fuite"))
    body = ("Voir ci-dessous.\n\n---------- Forwarded message ---------\nFrom: Jean <jean@example.com>\n"
            "Date: Mon, Jan 8, 2024 at 5:20 PM\nSubject: Fuite\nTo: Sophie <sophie@acme.example>\n\n"
            "La fuite continue.\n")
    deliver(make_eml(sender="Sophie <sophie@acme.example>", message_id=fwd, subject="Fwd: Fuite", body=body))
    [item] = [json.loads(x) for x in run("inbox", "list", "--tenant", "acme", "--json").splitlines()]
    assert (item["matched_via"], item["author_email"]) == ("forward", "jean@example.com")
    conv = item["suggestions"][0]
    assert "forward" in run("inbox", "list", "--tenant", "acme")
    run("inbox", "move", str(item["id"]), code=2)                        # neither --to nor --new
    assert f"moved to conversation {conv}" in run("inbox", "move", fwd, "--tenant", "acme", "--to", str(conv))
    assert run("inbox", "list", "--tenant", "acme").strip() == "the unsorted inbox is empty"
    moved = json.loads(run("inbox", "move", str(item["id"]), "--new", "--author", "jean2@example.com", "--json"))
    assert moved["created_conversation"] and moved["from_conversation_id"] == conv


def test_settings_and_autoclose(run) -> None:
    assert "autoclose_days:        off" in run("conversations", "settings", "--tenant", "acme")
    out = json.loads(run("conversations", "settings", "--tenant", "acme", "--autoclose-days", "7",
                         "--strict-senders", "off", "--json"))
    assert (out["autoclose_days"], out["strict_senders"]) == (7, False)
    assert "1 to 15" in run("conversations", "settings", "--tenant", "acme", "--autoclose-days", "20", code=1)
    assert json.loads(run("conversations", "autoclose", "--json")) == {"closed": []}
