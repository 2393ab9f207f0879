"""``postroom rules check`` and ``postroom rules test`` through the real command group."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from postroom.cli import cli

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
EXAMPLE = str(FIXTURES / "rules" / "example.yaml")
INVALID = str(FIXTURES / "rules" / "invalid.yaml")


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["rules", *args])
    return result.exit_code, result.stdout, result.stderr


def test_check_ok() -> None:
    code, out, _ = run("check", EXAMPLE)
    assert code == 0
    assert out == f"OK {EXAMPLE}: 6 rules\n"


def test_check_reports_file_line_col() -> None:
    code, out, err = run("check", INVALID)
    assert code == 1 and out == ""
    assert err.splitlines() == [
        f"{INVALID}:5:19: unknown key 'domian'; did you mean 'domain'? (expected one of: is, in, contains, "
        "starts_with, ends_with, matches, exists, domain) (at rules[0].when.all[0].from.domian)",
        f"{INVALID}:6:31: invalid regular expression: missing ) at position 11, got 'factu(ur|re' "
        "(at rules[0].when.all[1].subject.matches)",
        f"{INVALID}:9:15: expected one of 'open', 'awaiting_feedback', 'in_progress' or 'closed', got 'done' "
        "(at rules[0].then.status)",
    ]


def test_check_missing_file() -> None:
    code, _, err = run("check", str(FIXTURES / "rules" / "nope.yaml"))
    assert code == 1 and "nope.yaml:1:1: cannot read rules file" in err


def test_test_shows_rule_by_rule_and_result() -> None:
    code, out, _ = run("test", EXAMPLE, str(FIXTURES / "emails" / "rules_invoice.eml"))
    assert code == 0
    assert "  1  no       Keep out spam (line 5)\n" in out
    assert '              decided by: header X-Spam-Flag is "YES" (line 6:46)\n' in out
    assert "  3  MATCH    Invoices to finance (line 18)\n" in out
    assert "  4  skipped  Large attachments (line 29)\n" in out
    assert "  category: Finance   [Invoices to finance]\n" in out
    assert "  assign: team finance   [Invoices to finance]\n" in out
    assert out.endswith("Nothing was changed.\n")


def test_test_auto_reply_and_contact_options() -> None:
    code, out, _ = run("test", EXAMPLE, str(FIXTURES / "emails" / "rules_question.eml"), "--contact", "tier=gold")
    assert code == 0
    assert "  5  MATCH    VIP customers (line 37)\n" in out
    assert "  tags: vip   [VIP customers]\n" in out
    assert "  auto-reply: template acknowledgement   [Acknowledge new questions]\n" in out
    code, out, _ = run("test", EXAMPLE, str(FIXTURES / "emails" / "rules_question.eml"), "--from", "")
    assert "auto-reply: suppressed (null envelope sender (bounce or notification))" in out


def test_test_json_with_envelope_options() -> None:
    code, out, _ = run("test", EXAMPLE, str(FIXTURES / "emails" / "rules_spam.eml"), "--json",
                       "--from", "x@lottery.example", "--to", "sales@acme.example")
    assert code == 0
    data = json.loads(out)
    assert data["disposition"] == "discard"
    assert data["fired"] == ["Keep out spam"]
    assert data["trace"][0] == {"name": "Keep out spam", "line": 5, "matched": True,
                                "decided_by": 'header X-Spam-Flag is "YES"', "decided_at": "6:46", "note": ""}
    assert data["trace"][1]["matched"] is None


def test_test_with_invalid_rules_exits_1() -> None:
    code, _, err = run("test", INVALID, str(FIXTURES / "emails" / "rules_spam.eml"))
    assert code == 1 and err.startswith(f"{INVALID}:5:19:")


def test_exit_codes_through_the_installed_entry_point() -> None:
    entry = [sys.executable, "-c", "from postroom.cli import main; main()", "rules", "check"]
    ok = subprocess.run([*entry, EXAMPLE], capture_output=True, text=True, timeout=60)
    assert (ok.returncode, ok.stdout) == (0, f"OK {EXAMPLE}: 6 rules\n")
    bad = subprocess.run([*entry, INVALID], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and bad.stderr.startswith(f"{INVALID}:5:19:")
