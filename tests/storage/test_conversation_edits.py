"""Staff edits of conversations on real rows: every check refuses the whole change, and what a change writes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from tests.web.conftest import store_mail

from postroom import flow
from postroom.app import App
from postroom.errors import NotFound, PostroomError
from postroom.storage import conversation_views, staff
from postroom.storage.conversation_edits import MAX_BULK, MAX_CATEGORY, MAX_SUBJECT, update_conversations
from postroom.storage.tables import Conversation

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


@pytest.fixture
def world(app: App, tenant_ids: dict[str, int]) -> dict[str, int]:
    """Two acme conversations, one globex one, an active and a deactivated acme user, a team per tenant."""
    ids = {}
    for name, slug in (("heating", "acme"), ("parking", "acme"), ("foreign", "globex")):
        inbound_id = store_mail(app, tenant_ids[slug], slug, subject=name.title(), sender=f"{name}@example.com")
        assert flow.process_inbound(app, inbound_id) == "done"
        with app.session() as session:
            ids[name] = conversation_views.list_conversations(session, slug, limit=1)[0].id
    with app.session() as session:
        ids["ann"] = staff.add_user(session, "acme", email="ann@acme.example", name="Ann").id
        ids["bob"] = staff.add_user(session, "acme", email="bob@acme.example", name="Bob").id
        ids["gina"] = staff.add_user(session, "globex", email="gina@globex.example", name="Gina").id
        staff.deactivate_user(session, "acme", "bob@acme.example")
        ids["keys"] = staff.add_team(session, "acme", "keys").id
        ids["sales"] = staff.add_team(session, "globex", "sales").id
    return ids | {"tenant": tenant_ids["acme"]}


def edit(app: App, world: dict[str, int], names: list[str], **changes: object) -> list[int]:
    with app.session() as session:
        return update_conversations(session, world["tenant"], [world[n] for n in names], now=NOW, **changes)


def row(app: App, conversation_id: int) -> dict[str, object]:
    with app.session() as session:
        conv = session.get(Conversation, conversation_id)
        assert conv is not None
        return {"status": conv.status, "category": conv.category, "subject": conv.subject,
                "user": conv.responsible_user_id, "team": conv.responsible_team_id,
                "closed": conv.closed_at is not None}


def assigned_events(app: App, world: dict[str, int], name: str) -> list[int | None]:
    with app.session() as session:
        return [e.recipient_id for e in conversation_views.events(session, world["tenant"], conversation_id=world[name])
                if e.kind == "assigned"]


@pytest.mark.parametrize(("changes", "error"), [
    ({"tags": ["x"], "owner": 1}, "cannot change owner, tags; editable: status, category, subject"),
    ({"status": "archived"}, "status 'archived': use one of open"),
    ({"category": "x" * (MAX_CATEGORY + 1)}, f"a category has at most {MAX_CATEGORY} characters"),
    ({"subject": " \t "}, f"a subject needs 1 to {MAX_SUBJECT} characters"),
    ({"subject": None}, "a subject needs 1"),
    ({"subject": "x" * (MAX_SUBJECT + 1)}, "a subject needs 1"),
    ({"responsible_user_id": "bob"}, "no active staff user"),
    ({"responsible_user_id": "gina"}, "no active staff user"),
    ({"responsible_user_id": 10_000}, "no active staff user 10000 in this tenant"),
    ({"responsible_team_id": "sales"}, "no team"),
    ({"responsible_team_id": 10_000}, "no team 10000 in this tenant"),
    ({"category": "keys", "status": "closed", "responsible_team_id": "sales"}, "no team"),
])
def test_a_refused_change_changes_nothing(app: App, world: dict[str, int], changes: dict[str, object],
                                          error: str) -> None:
    before = row(app, world["heating"])
    named = {k: world[v] if k.startswith("responsible") and isinstance(v, str) else v for k, v in changes.items()}
    with pytest.raises(PostroomError, match="^" + error.replace("(", r"\(")):
        edit(app, world, ["heating"], **named)
    assert row(app, world["heating"]) == before


def test_ids_are_checked_before_anything_changes(app: App, world: dict[str, int]) -> None:
    assert edit(app, world, [], status="closed") == []
    with pytest.raises(PostroomError, match=f"at most {MAX_BULK} conversations"), app.session() as session:
        update_conversations(session, world["tenant"], range(1, MAX_BULK + 2), status="closed")
    with pytest.raises(NotFound, match=f"no conversation {world['foreign']}$"):
        edit(app, world, ["heating", "foreign"], status="closed")
    assert row(app, world["heating"])["status"] == "open"


def test_a_change_writes_only_its_keys_on_every_conversation_once(app: App, world: dict[str, int]) -> None:
    assert edit(app, world, ["heating", "parking", "heating"], status="closed", category="  ",
                subject=" Heating \n broken ") == [world["heating"], world["parking"]]
    assert row(app, world["heating"]) == {"status": "closed", "category": None, "subject": "Heating broken",
                                          "user": None, "team": None, "closed": True}
    with app.session() as session:
        closed_at = session.get(Conversation, world["parking"]).closed_at
    assert closed_at is not None and closed_at.replace(tzinfo=UTC) == NOW
    edit(app, world, ["heating"], category=" repairs ", responsible_team_id=world["keys"])
    assert row(app, world["heating"]) == {"status": "closed", "category": "repairs", "subject": "Heating broken",
                                          "user": None, "team": world["keys"], "closed": True}
    edit(app, world, ["heating"], status="closed", category=None)
    assert row(app, world["heating"])["closed"] and row(app, world["heating"])["category"] is None
    edit(app, world, ["heating"], status="open")
    assert row(app, world["heating"])["closed"] is False


def test_only_a_newly_assigned_user_gets_an_assigned_event(app: App, world: dict[str, int]) -> None:
    edit(app, world, ["heating", "parking"], responsible_user_id=world["ann"])
    edit(app, world, ["heating"], responsible_user_id=world["ann"], status="in_progress")
    edit(app, world, ["parking"], responsible_user_id=None)
    assert row(app, world["parking"])["user"] is None
    assert assigned_events(app, world, "heating") == [world["ann"]]
    assert assigned_events(app, world, "parking") == [world["ann"]]
    edit(app, world, ["parking"], responsible_user_id=world["ann"])
    assert assigned_events(app, world, "parking") == [world["ann"], world["ann"]]
