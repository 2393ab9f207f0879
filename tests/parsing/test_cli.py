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
