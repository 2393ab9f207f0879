"""One way a rules decision changes a conversation, new or existing, against real staff rows."""

from __future__ import annotations

import pytest

from postroom.model import ConversationUpdate
from postroom.rules.model import Assign
from postroom.storage import routing, staff

EMPTY = {"tags": [], "category": None, "unit_ref": None, "status": "open",
         "responsible_user_id": None, "responsible_team_id": None}


@pytest.fixture
def people(app, tenant_ids) -> dict[str, int]:
    with app.session() as session:
        ann = staff.add_user(session, "acme", email="ann@acme.example", name="Ann").id
        bob = staff.add_user(session, "acme", email="bob@acme.example", name="Bob").id
        finance = staff.add_team(session, "acme", "finance").id
        keys = staff.add_team(session, "acme", "keys").id
        staff.add_team_member(session, finance, ann)
    return {"ann": ann, "bob": bob, "finance": finance, "keys": keys, "tenant": tenant_ids["acme"]}


def decide(app, people, current: dict, change: ConversationUpdate) -> dict:
    with app.session() as session:
        return routing.decided_values(session, people["tenant"], {**EMPTY, **current}, change)


def assign(kind: str, value: str) -> ConversationUpdate:
    return ConversationUpdate(set={"assign": Assign(kind, value)})


def test_a_user_keeps_the_team_only_if_a_member(app, people) -> None:
    member = decide(app, people, {"responsible_team_id": people["finance"]}, assign("user", "ann@acme.example"))
    assert member == {"responsible_user_id": people["ann"], "responsible_team_id": people["finance"]}
    stranger = decide(app, people, {"responsible_team_id": people["finance"]}, assign("user", "bob@acme.example"))
    assert stranger == {"responsible_user_id": people["bob"], "responsible_team_id": None}


def test_a_team_keeps_the_user_only_if_a_member(app, people) -> None:
    kept = decide(app, people, {"responsible_user_id": people["ann"]}, assign("team", "finance"))
    assert kept == {"responsible_team_id": people["finance"], "responsible_user_id": people["ann"]}
    cleared = decide(app, people, {"responsible_user_id": people["ann"]}, assign("team", "keys"))
    assert cleared == {"responsible_team_id": people["keys"], "responsible_user_id": None}


def test_fill_leaves_staff_choices_and_unknown_names_change_nothing(app, people) -> None:
    fill = ConversationUpdate(tags=("b",), fill={"assign": Assign("team", "keys"), "category": "Finance"})
    assert decide(app, people, {"responsible_user_id": people["bob"], "category": "Keys", "tags": ["a"]}, fill) == \
        {"tags": ["a", "b"]}
    assert decide(app, people, {}, assign("user", "nobody@acme.example")) == {}
    assert decide(app, people, {}, ConversationUpdate(set={"status": "bogus"})) == {}


def test_a_new_conversation_takes_every_value_set(app, people) -> None:
    change = ConversationUpdate(tags=("invoice",), set={"category": "Finance", "unit": "P-17", "status": "in_progress",
                                                        "assign": Assign("team", "finance")})
    assert decide(app, people, {}, change) == {"tags": ["invoice"], "category": "Finance", "unit_ref": "P-17",
                                               "status": "in_progress", "responsible_team_id": people["finance"],
                                               "responsible_user_id": None}


def test_fill_sets_only_what_is_still_empty_and_never_a_status(app, people) -> None:
    fill = ConversationUpdate(fill={"category": "Finance", "unit": "P-17", "status": "closed", "colour": "red",
                                    "assign": Assign("user", "ann@acme.example")})
    assert decide(app, people, {}, fill) == {"category": "Finance", "unit_ref": "P-17",
                                             "responsible_user_id": people["ann"], "responsible_team_id": None}
    assert decide(app, people, {"unit_ref": "B-2", "responsible_team_id": people["keys"]}, fill) == \
        {"category": "Finance"}


def test_set_overrides_what_fill_chose_and_ignores_unknown_keys(app, people) -> None:
    change = ConversationUpdate(fill={"category": "Keys", "unit": "P-17"},
                                set={"category": "Finance", "colour": "red", "status": "closed"})
    assert decide(app, people, {"category": "Old"}, change) == {"unit_ref": "P-17", "category": "Finance",
                                                                "status": "closed"}


def test_a_deactivated_user_is_never_assigned(app, people) -> None:
    with app.session() as session:
        staff.deactivate_user(session, "acme", "bob@acme.example")
    assert decide(app, people, {}, assign("user", "bob@acme.example")) == {}
    assert decide(app, people, {}, ConversationUpdate(set={"assign": Assign("robot", "r2")})) == {}
