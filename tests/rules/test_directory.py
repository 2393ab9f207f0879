"""Rules against the tenant's directory: users, teams and templates they name must exist.

Checked with file:line:col when an admin checks a file for a tenant; at run
time an action naming what the tenant lacks is skipped with a warning that
the routing record, the log and /metrics show.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.rules.conftest import finished, rows, write_rules

from postroom.cli import cli
from postroom.metrics import RULE_ACTIONS_SKIPPED
from postroom.rules import directory, parse_ruleset
from postroom.settings import Settings
from postroom.storage import conversation_views, staff
from postroom.testing import make_eml, wait_until

RULES = """\
rules:
  - name: Invoices
    when: { subject: { contains: invoice } }
    then:
      assign: { team: finance }
  - name: Leaks
    when: { subject: { contains: leak } }
    then:
      assign: { user: Ann@Acme.example }
      auto_reply: leak_notice
  - name: Everything
    then: { auto_reply: acknowledgement }
"""


class Known:
    tenant = "acme"

    def __init__(self, users: set[str] = frozenset(), teams: set[str] = frozenset(),  # type: ignore[assignment]
                 templates: set[str] = frozenset({"acknowledgement"})) -> None:  # type: ignore[assignment]
        self.users, self.teams, self.templates = users, teams, templates

    def has_user(self, email: str) -> bool:
        return email in self.users

    def has_team(self, name: str) -> bool:
        return name in self.teams

    def has_template(self, name: str) -> bool:
        return name in self.templates


def test_problems_point_at_each_name() -> None:
    found = directory.problems(parse_ruleset(RULES, "acme.yaml"), Known())
    assert [line.split(": rule ")[0] for line in found] == ["acme.yaml:5:23", "acme.yaml:9:23", "acme.yaml:10:19"]
    assert "team 'finance' does not exist in tenant acme" in found[0]
    assert "user ann@acme.example is not an active staff member" in found[1]
    assert "template 'leak_notice' does not exist" in found[2]
    assert directory.problems(parse_ruleset(RULES, "acme.yaml"), Known(
        {"ann@acme.example"}, {"finance"}, {"acknowledgement", "leak_notice"})) == []


@pytest.fixture
def cli_env(app, settings: Settings, tenant_ids, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for name in ("data_dir", "database_url", "mail_domain"):
        monkeypatch.setenv(f"POSTROOM_{name.upper()}", str(getattr(settings, name)))


def test_rules_check_for_a_tenant(cli_env, app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "acme.yaml"
    path.write_text(RULES)
    assert CliRunner().invoke(cli, ["rules", "check", str(path)]).exit_code == 0  # without a tenant: syntax only
    refused = CliRunner().invoke(cli, ["rules", "check", str(path), "--tenant", "acme"])
    assert refused.exit_code == 1
    assert [line.split(": rule ")[0] for line in refused.stderr.splitlines()] == [
        f"{path}:5:23", f"{path}:9:23", f"{path}:10:19"]
    with app.session() as session:
        staff.add_team(session, "acme", "finance")
        staff.add_user(session, "acme", email="ann@acme.example", name="Ann")
    template = app.settings.data_dir / "templates" / "acme" / "leak_notice.txt.j2"
    template.parent.mkdir(parents=True, exist_ok=True)
    template.write_text("We are on it.\n")
    ok = CliRunner().invoke(cli, ["rules", "check", str(path), "--tenant", "acme"])
    assert ok.exit_code == 0, ok.output
    unknown = CliRunner().invoke(cli, ["rules", "check", str(path), "--tenant", "nobody"])
    assert unknown.exit_code == 1 and "no tenant" in str(unknown.exception)  # main prints it as one line


def test_at_run_time_a_missing_team_is_skipped_with_a_warning(routed, send, settings) -> None:
    write_rules(settings, "acme", RULES)
    with routed.app.session() as session:
        staff.add_user(session, "acme", email="ann@acme.example", name="Ann")
    skipped = RULE_ACTIONS_SKIPPED.labels
    before = (skipped("assign")._value.get(), skipped("auto_reply")._value.get())
    send(make_eml(subject="Invoice 17"))
    send(make_eml(subject="Leak in the kitchen", sender="Zoe <zoe@example.com>"), mail_from="zoe@example.com")
    wait_until(lambda: finished(routed, 2))
    by_subject = {r.subject: r for r in rows(routed)}
    invoice, leak = by_subject["Invoice 17"], by_subject["Leak in the kitchen"]
    assert invoice.status == leak.status == "done"
    assert any("assign skipped: team 'finance' does not exist" in w for w in invoice.routing["warnings"])
    assert "assign" not in invoice.routing and invoice.routing["auto_reply"] == "acknowledgement"
    assert any("auto_reply skipped: template 'leak_notice'" in w for w in leak.routing["warnings"])
    assert leak.routing["assign"] == "user ann@acme.example"
    assert leak.routing["auto_reply"] == "acknowledgement"  # the last valid auto-reply still stands
    assert (skipped("assign")._value.get(), skipped("auto_reply")._value.get()) == (before[0] + 1, before[1] + 1)
    with routed.app.session() as session:
        by_conv = {c.subject: c for c in conversation_views.list_conversations(session, "acme")}
    assert by_conv["Invoice 17"].responsible_team_id is None
