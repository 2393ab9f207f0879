"""``postroom parse``: JSON shape, directory JSON Lines, errors and exit codes."""

from __future__ import annotations

import json
import shutil

from click.testing import CliRunner
from tests.parsing.conftest import FIXTURES

from postroom.cli import cli

KEYS = {"message_id", "in_reply_to", "references", "subject", "date", "from", "reply_to", "to", "cc", "text",
        "html", "reply_text", "quoted_text", "signature", "attachments", "forward", "auto_reply", "bounce",
        "defects"}


def test_file_json_has_the_stable_keys():
    result = CliRunner().invoke(cli, ["parse", str(FIXTURES / "gmail_forward_en.eml"), "--json"])
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert set(data) >= KEYS
    assert data["from"] == {"name": "Sam Staff", "address": "sam.staff@acme.mail.test"}
    assert data["date"] == "2024-01-22T10:00:00+01:00"
    assert set(data["attachments"][0]) >= {"filename", "content_type", "size", "sha256", "inline", "content_id"}
    assert set(data["forward"]) >= {"from", "to", "cc", "date", "subject", "text", "attachments", "note"}
    assert data["forward"]["from"] == {"name": "Chris Customer", "address": "chris@customer.example"}


def test_bounce_and_auto_reply_json():
    result = CliRunner().invoke(cli, ["parse", str(FIXTURES / "postfix_bounce_dsn.eml"), "--json"])
    data = json.loads(result.output)
    assert data["bounce"]["permanent"] == ["nobody@customer.example"]
    assert data["bounce"]["original_message_id"] == "<out-777@acme.mail.test>"
    assert data["auto_reply"] == {"reason": "auto-submitted: auto-replied"}


def test_directory_json_lines_survive_a_bad_file(tmp_path):
    shutil.copy(FIXTURES / "gmail_reply_en.eml", tmp_path / "a.eml")
    (tmp_path / "b.eml").write_bytes(b"")
    shutil.copy(FIXTURES / "yahoo_reply_en.eml", tmp_path / "c.eml")
    result = CliRunner().invoke(cli, ["parse", str(tmp_path), "--json"])
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["file"].rsplit("/", 1)[-1] for line in lines] == ["a.eml", "b.eml", "c.eml"]
    assert lines[1]["error"] == "parse failed: empty message"
    assert lines[2]["from"]["address"] == "eve.example@yahoo.example"
    assert result.exit_code == 1


def test_readable_summary():
    result = CliRunner().invoke(cli, ["parse", str(FIXTURES / "thunderbird_attachments_en.eml")])
    assert result.exit_code == 0
    assert "From:       Chris Customer <chris@customer.example>" in result.output
    assert "Attachment: winmail.dat (application/ms-tnef, 46 bytes, attached) [tnef]" in result.output


def test_readable_summary_of_a_reply_with_cc_signature_and_quote():
    result = CliRunner().invoke(cli, ["parse", str(FIXTURES / "apple_reply_nl.eml")])
    assert result.exit_code == 0
    assert result.output.endswith(
        "Date:       2024-01-10T08:01:44+01:00\n"
        "From:       Joost de Vries <joost@klant.example.nl>\n"
        "To:         Acme Support <support@acme.mail.test>\n"
        "Cc:         Inge Bakker <inge@klant.example.nl>\n"
        "Subject:    Re: Levering volgende week\n\n"
        "--- reply ---\nDinsdag past prima, graag vóór 12 uur.\n"
        "--- signature ---\nVerzonden vanaf mijn iPhone\n"
        "--- quoted: 5 lines ---\n\n")


def test_readable_summary_of_a_bare_bounce_shows_what_is_missing():
    output = CliRunner().invoke(cli, ["parse", str(FIXTURES / "mta_dsn_bare_failed.eml")]).output
    lines = output.splitlines()
    assert lines[0] == "Message-ID: -" and lines[1].endswith(" (fallback)")
    assert lines[2:5] == ["From:       -", "To:         -", "Subject:    "]
    assert "Bounce:     permanent ['stuck@partner.example'] temporary [] original -" in lines
    assert "Defects:    missing-date, missing-from, missing-message-id" in lines
    assert "--- signature ---" not in lines and not any(line.startswith(("Cc:", "--- quoted")) for line in lines)


def test_readable_summary_of_forwards_auto_replies_and_inline_images():
    def summary(name: str) -> str:
        return CliRunner().invoke(cli, ["parse", str(FIXTURES / name)]).output

    assert "Forward of: Chris Customer <chris@customer.example>, 2024-01-21T18:30:00, 'Broken kettle'\n" in \
        summary("gmail_forward_en.eml")
    assert "Auto-reply: auto-submitted: auto-replied\nBounce:     permanent ['nobody@customer.example'] temporary [] " \
        "original <out-777@acme.mail.test>\n" in summary("postfix_bounce_dsn.eml")
    assert "Attachment: image001.png (image/png, 49 bytes, inline)\n" in summary("outlook_web_reply_en.eml")


def test_readable_summary_of_a_directory_names_each_file_and_its_error(tmp_path):
    shutil.copy(FIXTURES / "gmail_reply_en.eml", tmp_path / "a.eml")
    (tmp_path / "b.eml").write_bytes(b"")
    result = CliRunner().invoke(cli, ["parse", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.startswith(f"== {tmp_path / 'a.eml'}\nMessage-ID: ")
    assert result.output.endswith(f"== {tmp_path / 'b.eml'}\nerror: parse failed: empty message\n")
