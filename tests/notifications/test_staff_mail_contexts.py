"""What staff mail holds, stored through the real compose path: one mail per event at once, or one digest.

Events come from real staff edits plus events written as the pipeline writes them; the queued outbound rows
are read back, so nothing is mocked and no server runs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from tests.web.conftest import store_mail

from postroom import flow
from postroom.app import App
from postroom.outbound import staff_mail
from postroom.storage import conversation_edits, conversation_views, conversations, staff
from postroom.storage import outbound as outbound_store
from postroom.storage import staff_mail as mail_settings
from postroom.storage.outbound import OutboundRecord
from postroom.storage.tables import Tenant

PORTAL = "https://portal.acme.example/"


def received(app: App, tenant_id: int, slug: str, subject: str) -> int:
    assert flow.process_inbound(app, store_mail(app, tenant_id, slug, subject=subject)) == "done"
    with app.session() as session:
        return conversation_views.list_conversations(session, slug, limit=1)[0].id


@pytest.fixture
def world(app: App, tenant_ids: dict[str, int]) -> dict[str, int]:
    """Acme's Boiler and globex's Secret conversations; ann (mail at once) and bob (digest) of acme."""
    ids = {"acme": tenant_ids["acme"], "boiler": received(app, tenant_ids["acme"], "acme", "Boiler"),
           "secret": received(app, tenant_ids["globex"], "globex", "Globex secret")}
    with app.session() as session:
        for name, mode in (("ann", "immediate"), ("bob", "digest")):
            ids[name] = staff.add_user(session, "acme", email=f"{name}@acme.example", name=name.title()).id
            mail_settings.set_mode(session, ids["acme"], ids[name], mode)
    return ids


def portal(app: App, tenant_id: int, url: str | None) -> None:
    with app.session() as session:
        tenant = session.get(Tenant, tenant_id)
        assert tenant is not None
        tenant.settings = {"portal_url": url} if url else {}


def raise_events(app: App, world: dict[str, int]) -> None:
    """For ann and bob each: an assignment of Boiler, a failed delivery, an event naming another tenant's row."""
    with app.session() as session:
        for user in ("ann", "bob"):
            conversation_edits.update_conversations(session, world["acme"], [world["boiler"]],
                                                    responsible_user_id=world[user])
            conversations.add_event(session, world["acme"], "delivery_failed", "user", world[user],
                                    subject="Re: Boiler", recipients=["zoe@example.com"], reason="550 no such user")
            conversations.add_event(session, world["acme"], "assigned", "user", world[user],
                                    conversation_id=world["secret"], subject="Stale", reference="AC-OLD")


def queued(app: App, ids: list[int]) -> list[OutboundRecord]:
    with app.session() as session:
        return [outbound_store.get_outbound(session, i) for i in ids]


def test_mail_at_once_is_one_mail_per_event_linking_its_own_conversation(app: App, world: dict[str, int]) -> None:
    portal(app, world["acme"], PORTAL)
    raise_events(app, world)
    assigned, failed, foreign = queued(app, staff_mail.run(app))
    assert [r.kind for r in (assigned, failed, foreign)] == ["staff_notice"] * 3
    assert {r.recipients[0].address for r in (assigned, failed, foreign)} == {"ann@acme.example"}
    assert assigned.subject.startswith("You are now responsible for ") and assigned.subject.endswith(": Boiler")
    assert f"{PORTAL}conversations/{world['boiler']}" in assigned.text
    assert failed.subject == "Not delivered to zoe@example.com: Re: Boiler"
    assert "550 no such user" in failed.text and PORTAL not in failed.text
    assert foreign.subject == "You are now responsible for AC-OLD: Stale", "another tenant's row is never read"
    assert "Globex" not in foreign.text


def test_a_digest_lists_every_event_with_its_body_and_link(app: App, world: dict[str, int]) -> None:
    portal(app, world["acme"], PORTAL)
    raise_events(app, world)
    later = datetime.now(UTC) + timedelta(hours=2)
    digests = [r for r in queued(app, staff_mail.run(app, now=later)) if r.kind == "staff_digest"]
    assert len(digests) == 1 and digests[0].recipients[0].address == "bob@acme.example"
    digest = digests[0]
    assert digest.subject == "3 notification(s) from Acme Builders"
    boiler = f"{PORTAL}conversations/{world['boiler']}"
    assert "- You are now responsible for " in digest.text and f"\n  {boiler}\n" in digest.text
    assert "- Not delivered to zoe@example.com: Re: Boiler\n  550 no such user\n\n" in digest.text
    assert f"- You are now responsible for AC-OLD: Stale\n  {PORTAL}conversations/{world['secret']}" in digest.text
    assert f"Open the conversation: {PORTAL}\n" in digest.text


def test_without_a_portal_no_mail_links_anywhere(app: App, world: dict[str, int]) -> None:
    raise_events(app, world)
    later = datetime.now(UTC) + timedelta(hours=2)
    records = queued(app, staff_mail.run(app, now=later))
    assert len(records) == 4 and not any("http" in r.text for r in records)
    digest = next(r for r in records if r.kind == "staff_digest")
    assert "- Not delivered to zoe@example.com: Re: Boiler\n  550 no such user\n\n- " in digest.text
