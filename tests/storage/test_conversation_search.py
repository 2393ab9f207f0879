"""Conversation search on real rows: each filter alone and together, both ways of every yes/no filter."""

from __future__ import annotations

import pytest
from tests.web.conftest import store_mail

from postroom import flow
from postroom.app import App
from postroom.errors import PostroomError
from postroom.storage import conversation_edits, conversation_views, staff
from postroom.storage.conversation_search import MAX_LIMIT, ConversationFilter, search
from postroom.storage.tables import Conversation


@pytest.fixture
def world(app: App, tenant_ids: dict[str, int]) -> dict[str, int]:
    """Acme: a leak assigned to ann, keys of unit 4B for a team, a read invoice; globex: a leak of its own."""
    ids = {"acme": tenant_ids["acme"]}
    for name, slug, sender, subject in (("leak", "acme", "zoe@example.com", "Leak in the bathroom"),
                                        ("keys", "acme", "Piet <Piet@Example.org>", "Keys for unit 4B"),
                                        ("invoice", "acme", "ann@supplier.be", "Invoice question"),
                                        ("foreign", "globex", "zoe@example.com", "Leak at globex")):
        inbound_id = store_mail(app, tenant_ids[slug], slug, subject=subject, sender=sender,
                                body=f"About the {name}: 100% urgent_ly.")
        assert flow.process_inbound(app, inbound_id) == "done"
        with app.session() as session:
            ids[name] = conversation_views.list_conversations(session, slug, limit=1)[0].id
    with app.session() as session:
        ids["ann"] = staff.add_user(session, "acme", email="ann@acme.example", name="Ann").id
        ids["team"] = staff.add_team(session, "acme", "keys").id
        conversation_edits.update_conversations(session, ids["acme"], [ids["leak"]], responsible_user_id=ids["ann"],
                                                category="repairs")
        conversation_edits.update_conversations(session, ids["acme"], [ids["keys"]], responsible_team_id=ids["team"],
                                                status="in_progress")
        conversation_edits.mark_conversation_read(session, ids["invoice"])
        session.get(Conversation, ids["keys"]).unit_ref = "4B"  # type: ignore[union-attr]  # as a rule would
        ids["reference"] = conversation_views.get_conversation(session, ids["invoice"])[0].reference  # type: ignore
    return ids


def found(app: App, world: dict[str, int], **filters: object) -> set[int]:
    with app.session() as session:
        page = search(session, world["acme"], ConversationFilter(**filters))  # type: ignore[arg-type]
    assert page.total == len(page.items)
    return {c.id for c in page.items}


def test_each_filter_and_its_opposite(app: App, world: dict[str, int]) -> None:
    leak, keys, invoice = world["leak"], world["keys"], world["invoice"]
    assert found(app, world) == {leak, keys, invoice}
    assert found(app, world, status="in_progress") == {keys}
    assert found(app, world, category="repairs") == {leak}
    assert found(app, world, responsible_user_id=world["ann"]) == {leak}
    assert found(app, world, responsible_team_id=world["team"]) == {keys}
    assert found(app, world, unassigned=True) == {invoice}
    assert found(app, world, unassigned=False) == {leak, keys}
    assert found(app, world, unread=True) == {leak, keys}
    assert found(app, world, unread=False) == {invoice}
    assert found(app, world, unanswered=True) == {leak, keys, invoice}
    assert found(app, world, unanswered=False) == set()
    assert found(app, world, contact_email=" PIET@example.ORG ") == {keys}
    assert found(app, world, unit_ref="4B") == {keys}
    assert found(app, world, unread=True, unassigned=False, unit_ref="4B", contact_email="piet@example.org") == {keys}


def test_free_text_reads_subjects_bodies_and_references(app: App, world: dict[str, int]) -> None:
    assert found(app, world, text="LEAK") == {world["leak"]}
    assert found(app, world, text="the keys:") == {world["keys"]}
    assert found(app, world, text="100%") == found(app, world, text="urgent_ly") == \
        {world["leak"], world["keys"], world["invoice"]}
    assert found(app, world, text="1000%") == found(app, world, text="urgentXly") == set()
    assert found(app, world, text=f" #{world['reference'].lower()} ") == {world["invoice"]}
    assert found(app, world, text="   ") == {world["leak"], world["keys"], world["invoice"]}
    assert found(app, world, text="leak", unassigned=True) == set()


def test_a_bad_status_or_page_is_refused(app: App, world: dict[str, int]) -> None:
    with pytest.raises(PostroomError, match="^status 'archived': use one of open"):
        found(app, world, status="archived")
    with app.session() as session:
        for offset, limit in ((0, 0), (0, MAX_LIMIT + 1), (-1, 10)):
            with pytest.raises(PostroomError, match=f"limit must be 1..{MAX_LIMIT}"):
                search(session, world["acme"], offset=offset, limit=limit)
        page = search(session, world["acme"], offset=1, limit=1)
    assert (page.total, page.offset, page.limit, len(page.items)) == (3, 1, 1, 1)
