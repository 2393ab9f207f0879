"""Tenant domains decide who gets mail: none may take the mail domain's names or another tenant's domain."""

from __future__ import annotations

import json
import os
import smtplib
import subprocess
import sys
import threading
from collections.abc import Callable

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text

from postroom.app import App
from postroom.cli import cli
from postroom.errors import PostroomError
from postroom.service import Service
from postroom.settings import Settings
from postroom.storage import tenants
from postroom.storage.tables import InboundMessage, TenantDomain
from postroom.testing import make_eml, wait_until

Run = Callable[..., tuple[int, str]]


def _env(settings: Settings) -> dict[str, str]:
    return {"POSTROOM_DATA_DIR": str(settings.data_dir), "POSTROOM_DATABASE_URL": settings.database_url,
            "POSTROOM_MAIL_DOMAIN": settings.mail_domain, "POSTROOM_BROKER_URL": ""}


@pytest.fixture
def run(settings: Settings, tenant_ids: dict[str, int]) -> Run:
    """``postroom ARGS`` in process: (exit code, output or the error's one line)."""

    def invoke(*args: str) -> tuple[int, str]:
        result = CliRunner(env=_env(settings)).invoke(cli, list(args))
        if isinstance(result.exception, PostroomError):
            return result.exit_code, f"error: {result.exception}"
        return result.exit_code, result.output

    return invoke


def _deliver(service: Service, rcpt: str, tag: str) -> str:
    """Send one message to ``rcpt`` over SMTP; the slug of the tenant it was stored under."""
    with smtplib.SMTP("127.0.0.1", service.smtp_port, timeout=10) as client:
        client.sendmail("customer@example.org", [rcpt], make_eml(message_id=f"<{tag}@example.org>"),
                        mail_options=[] if rcpt.isascii() else ["SMTPUTF8"])
    with service.app.session() as session:
        tenant_id = session.scalars(select(InboundMessage.tenant_id).order_by(InboundMessage.id.desc())).first()
    directory = service.app.directory()
    return directory.slug_of(tenant_id)


@pytest.mark.parametrize("domain", [
    "globex.mail.test",  # another tenant's slug domain
    "GLOBEX.Mail.Test",
    "mail.test",  # the mail domain itself
    "future.mail.test",  # a tenant created later would receive there
    "deep.acme.mail.test",
    "help.globex.example",  # another tenant's custom domain
    "x.help.globex.example",  # under it
    "globex.example",  # above it
])
def test_domains_that_would_take_other_mail_are_refused(run: Run, domain: str) -> None:
    assert run("tenant", "domain", "add", "globex", "help.globex.example")[0] == 0
    code, error = run("tenant", "domain", "add", "acme", domain)
    assert code == 1 and error.startswith("error: domain ") and "\n" not in error, error
    listed = {t["slug"]: t["domains"] for t in map(json.loads, run("tenant", "list", "--json")[1].splitlines())}
    assert listed == {"acme": ["acme.mail.test"], "globex": ["globex.mail.test", "help.globex.example"]}


@pytest.mark.parametrize("domain", [
    "acme.example.", "a..b.example", "ex_ample.com", "1.2.3.4", "localhost", "xn--zz.example",
    "acme-.example", "x.-acme.example", f"{'a' * 64}.example", "acme\u200b.example", "",
])
def test_malformed_domains_are_refused(run: Run, domain: str) -> None:
    code, error = run("tenant", "domain", "add", "acme", domain)
    assert code == 1 and error.startswith("error: domain "), error


def test_refused_hijacks_leave_mail_where_it_belongs(run: Run, service: Service) -> None:
    assert run("tenant", "domain", "add", "acme", "globex.mail.test")[0] == 1
    assert run("tenant", "domain", "add", "acme", "mail.test")[0] == 1
    assert run("tenant", "domain", "add", "acme", "Bücher.Acme.Example") == (
        0, "domain xn--bcher-kva.acme.example added to acme\n")
    assert run("tenant", "domain", "add", "acme", "support.xn--bcher-kva.acme.example")[0] == 0, "nested, same tenant"
    service.app.directory(refresh=True)
    assert _deliver(service, "inbox@globex.mail.test", "g1") == "globex"
    assert _deliver(service, "inbox@bücher.acme.example", "a1") == "acme"
    assert _deliver(service, "inbox@support.xn--bcher-kva.acme.example", "a2") == "acme"


def test_a_custom_domain_row_under_the_mail_domain_takes_nothing(run: Run, service: Service) -> None:
    """Rows written before such domains were refused (or before the mail domain changed) route no mail."""
    with service.app.session() as session:
        session.add(TenantDomain(tenant_id=service.app.directory().slugs["acme"], domain="globex.mail.test"))
        session.add(TenantDomain(tenant_id=service.app.directory().slugs["acme"], domain="newco.mail.test"))
    service.app.directory(refresh=True)
    assert _deliver(service, "inbox@globex.mail.test", "g2") == "globex"
    code, error = run("tenant", "add", "newco")
    assert code == 1 and "newco.mail.test is a custom domain of tenant 'acme'" in error, error


def test_the_real_command_refuses_in_one_line(settings: Settings, tenant_ids: dict[str, int]) -> None:
    done = subprocess.run([sys.executable, "-m", "postroom", "tenant", "domain", "add", "acme", "demo.mail.test"],
                          env={**os.environ, **_env(settings)}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.splitlines() == ["error: domain demo.mail.test is under the mail domain mail.test, where "
                                        "tenants receive at <slug>.mail.test; acme already has acme.mail.test"]


def test_nested_domains_added_at_once_by_two_tenants_do_not_both_pass(app: App, tenant_ids: dict[str, int]) -> None:
    """globex's add runs its check while acme's add is not yet committed; it waits for it and is refused."""
    if app.engine.dialect.name != "postgresql":
        pytest.skip("SQLite transactions here begin IMMEDIATE: a second one cannot even start")
    acme_flushed, acme_may_commit = threading.Event(), threading.Event()
    outcome: list[str] = []

    def acme_adds() -> None:
        with app.session() as session:
            tenants.add_domain(session, "acme", "acme.example", mail_domain="mail.test")
            acme_flushed.set()
            acme_may_commit.wait(30)

    def globex_adds() -> None:
        try:
            with app.session() as session:
                tenants.add_domain(session, "globex", "help.acme.example", mail_domain="mail.test")
            outcome.append("added")
        except PostroomError as exc:
            outcome.append(str(exc))

    def globex_waits_for_the_lock() -> bool:
        with app.engine.connect() as conn:
            return bool(conn.scalar(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")))

    first = threading.Thread(target=acme_adds)
    first.start()
    assert acme_flushed.wait(30)
    second = threading.Thread(target=globex_adds)
    second.start()
    assert wait_until(lambda: outcome or globex_waits_for_the_lock(), timeout=30)
    acme_may_commit.set()
    first.join(30)
    second.join(30)
    assert outcome == ["domain help.acme.example overlaps acme.example, a domain of tenant 'acme'"]
