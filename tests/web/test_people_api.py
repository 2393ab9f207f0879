"""Staff, teams, contacts, spam and moves over HTTP: every people route is tenant-isolated."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from postroom import flow
from postroom.app import App
from postroom.storage import conversation_views, staff

from .conftest import auth, store_mail

# Routes addressing one row: (method, template) -> (path from a tenant's ids, request arguments).
PEOPLE_ROUTES: dict[tuple[str, str], tuple] = {
    ("POST", "/api/v1/users/{user_id}/deactivate"): (lambda i: f"/api/v1/users/{i['user']}/deactivate", {}),
    ("GET", "/api/v1/users/{user_id}/notification-mail"): (
        lambda i: f"/api/v1/users/{i['user']}/notification-mail", {}),
    ("PUT", "/api/v1/users/{user_id}/notification-mail"): (
        lambda i: f"/api/v1/users/{i['user']}/notification-mail", {"json": {"mode": "immediate"}}),
    ("POST", "/api/v1/teams/{team_id}/members"): (lambda i: f"/api/v1/teams/{i['team']}/members",
                                                  {"json": {"user_id": "user"}}),
    ("DELETE", "/api/v1/teams/{team_id}/members/{user_id}"): (
        lambda i: f"/api/v1/teams/{i['team']}/members/{i['member']}", {}),
    ("GET", "/api/v1/contacts/{contact_id}"): (lambda i: f"/api/v1/contacts/{i['contact']}", {}),
    ("PATCH", "/api/v1/contacts/{contact_id}"): (lambda i: f"/api/v1/contacts/{i['contact']}",
                                                 {"json": {"channel": "portal"}}),
    ("POST", "/api/v1/contacts/{contact_id}/addresses"): (lambda i: f"/api/v1/contacts/{i['contact']}/addresses",
                                                          {"json": {"address": "jean@work.example"}}),
    ("POST", "/api/v1/contacts/{contact_id}/merge"): (lambda i: f"/api/v1/contacts/{i['contact']}/merge",
                                                      {"json": {"other_id": "other_contact"}}),
    ("POST", "/api/v1/conversations/{conversation_id}/spam"): (
        lambda i: f"/api/v1/conversations/{i['conversation']}/spam", {}),
    ("POST", "/api/v1/conversations/{conversation_id}/unspam"): (
        lambda i: f"/api/v1/conversations/{i['conversation']}/unspam", {}),
}
PEOPLE_LISTS = {("GET", "/api/v1/users"), ("GET", "/api/v1/teams"), ("POST", "/api/v1/teams"),
                ("GET", "/api/v1/contacts")}
PEOPLE_COVERED = set(PEOPLE_ROUTES) | PEOPLE_LISTS


def received(app: App, tenant_ids: dict[str, int], slug: str, *, message_id: str, **eml: object) -> int:
    """The message row of one mail run through the real pipeline."""
    assert flow.process_inbound(app, store_mail(app, tenant_ids[slug], slug, message_id=message_id, **eml)) == "done"
    with app.session() as session:
        row = conversation_views.message_row_by_header(session, tenant_ids[slug], message_id)
    assert row is not None
    return row


def message(app: App, row: int) -> conversation_views.MessageView:
    with app.session() as session:
        return conversation_views.get_message(session, row)


@pytest.fixture
def people(app: App, tenant_ids: dict[str, int]) -> dict[str, dict[str, int]]:
    """Per tenant: a conversation of Jean's, Piet's contact, a staff user, a team with a member."""
    ids: dict[str, dict[str, int]] = {}
    for slug in ("acme", "globex"):
        jean = message(app, received(app, tenant_ids, slug, message_id=f"<jean-{slug}@example.com>",
                                     subject=f"{slug} secret price list"))
        piet = message(app, received(app, tenant_ids, slug, message_id=f"<piet-{slug}@example.org>",
                                     sender="Piet <piet@example.org>", subject="Parking"))
        with app.session() as session:
            user = staff.add_user(session, slug, email=f"anna@{slug}.example", name="Anna").id
            member = staff.add_user(session, slug, email=f"bert@{slug}.example", name="Bert").id
            team = staff.add_team(session, slug, "finance", members=(member,)).id
        ids[slug] = {"conversation": jean.conversation_id, "contact": jean.author_contact_id,
                     "other_contact": piet.author_contact_id, "user": user, "member": member, "team": team,
                     "message": jean.id, "piet_conversation": piet.conversation_id}
    return ids


def _fill(value: object, ids: dict[str, int]) -> object:
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return ids[value] if isinstance(value, str) and value in ids else value


def test_every_people_route_is_tenant_isolated(client: TestClient, keys: dict[str, str],
                                              people: dict[str, dict[str, int]]) -> None:
    globex = people["globex"]
    for (method, template), (path, kwargs) in PEOPLE_ROUTES.items():
        refused = client.request(method, path(globex), headers=auth(keys["acme"]), **_fill(kwargs, people["acme"]))
        assert refused.status_code == 404, (template, refused.text)
        assert "secret" not in refused.text and "piet" not in refused.text
    for (method, template), (path, kwargs) in PEOPLE_ROUTES.items():
        allowed = client.request(method, path(globex), headers=auth(keys["globex"]), **_fill(kwargs, globex))
        assert allowed.status_code == 200, (template, allowed.text)


def test_people_lists_stay_in_tenant(client: TestClient, keys: dict[str, str],
                                     people: dict[str, dict[str, int]]) -> None:
    key = auth(keys["acme"])
    users = client.get("/api/v1/users", headers=key).json()
    assert {u["email"] for u in users} == {"anna@acme.example", "bert@acme.example"}
    teams = client.get("/api/v1/teams", headers=key).json()
    assert [(t["name"], t["member_emails"]) for t in teams] == [("finance", ["bert@acme.example"])]
    listed = client.get("/api/v1/contacts", headers=key).json()
    assert {c["id"] for c in listed} == {people["acme"]["contact"], people["acme"]["other_contact"]}
    made = client.post("/api/v1/teams", json={"name": "keys"}, headers=key)
    assert made.status_code == 201 and made.json()["member_ids"] == []
    assert client.post("/api/v1/teams", json={"name": "keys"}, headers=key).status_code == 400
    assert [t["name"] for t in client.get("/api/v1/teams", headers=auth(keys["globex"])).json()] == ["finance"]


def test_team_membership_and_deactivation(client: TestClient, app: App, keys: dict[str, str],
                                          tenant_ids: dict[str, int], people: dict[str, dict[str, int]]) -> None:
    acme, key = people["acme"], auth(keys["acme"])
    added = client.post(f"/api/v1/teams/{acme['team']}/members", json={"user_id": acme["user"]}, headers=key).json()
    assert added["member_emails"] == ["anna@acme.example", "bert@acme.example"]
    assert client.patch(f"/api/v1/conversations/{acme['conversation']}", json={"responsible_user_id": acme["user"]},
                        headers=key).status_code == 200
    gone = client.delete(f"/api/v1/teams/{acme['team']}/members/{acme['member']}", headers=key)
    assert gone.json()["member_emails"] == ["anna@acme.example"]
    assert client.delete(f"/api/v1/teams/{acme['team']}/members/{acme['member']}", headers=key).status_code == 404

    with app.session() as session:
        assert "anna@acme.example" in staff.active_addresses(session, tenant_ids["acme"])
    done = client.post(f"/api/v1/users/{acme['user']}/deactivate", headers=key).json()
    assert (done["active"], done["unassigned"]) == (False, [acme["conversation"]])
    with app.session() as session:
        assert "anna@acme.example" not in staff.active_addresses(session, tenant_ids["acme"])  # cache dropped
    refused = client.post(f"/api/v1/conversations/{acme['conversation']}/replies",
                          data={"user_id": str(acme["user"]), "text": "Hello"}, headers=key)
    assert refused.status_code == 400 and "no active staff user" in refused.json()["error"]["message"]
    assigned = client.patch(f"/api/v1/conversations/{acme['conversation']}",
                            json={"responsible_user_id": acme["user"]}, headers=key)
    assert assigned.status_code == 400 and "no active staff user" in assigned.json()["error"]["message"]


def test_contacts_link_merge_and_channel(client: TestClient, keys: dict[str, str],
                                         people: dict[str, dict[str, int]]) -> None:
    acme, key = people["acme"], auth(keys["acme"])
    jean, piet = acme["contact"], acme["other_contact"]
    linked = client.post(f"/api/v1/contacts/{jean}/addresses", json={"address": "Jean@Work.example"}, headers=key)
    assert linked.json()["addresses"] == ["jean@example.com", "jean@work.example"]
    taken = client.post(f"/api/v1/contacts/{jean}/addresses", json={"address": "piet@example.org"}, headers=key)
    assert taken.status_code == 400
    assert taken.json()["error"]["message"] == (f"piet@example.org belongs to contact {piet}; to make them one, "
                                                f"merge them with: postroom contact merge {jean} {piet}")
    merged = client.post(f"/api/v1/contacts/{jean}/merge", json={"other_id": piet}, headers=key).json()
    assert merged["addresses"] == ["jean@example.com", "piet@example.org", "jean@work.example"]  # primary, then by age
    assert merged["conversations"] == 2
    dropped = client.get(f"/api/v1/contacts/{piet}", headers=key).json()
    assert (dropped["merged_into_id"], dropped["addresses"]) == (jean, [])
    assert [c["id"] for c in client.get("/api/v1/contacts", headers=key).json()] == [jean]
    assert client.post(f"/api/v1/contacts/{jean}/merge", json={"other_id": piet}, headers=key).status_code == 400
    changed = client.patch(f"/api/v1/contacts/{jean}", json={"channel": "portal", "locale": "fr"}, headers=key)
    assert (changed.json()["channel"], changed.json()["locale"]) == ("portal", "fr")
    assert client.patch(f"/api/v1/contacts/{jean}", json={"channel": "fax"}, headers=key).status_code == 422


def test_spam_over_http_blocks_the_next_mail(client: TestClient, app: App, keys: dict[str, str],
                                             tenant_ids: dict[str, int], people: dict[str, dict[str, int]]) -> None:
    acme, key = people["acme"], auth(keys["acme"])
    marked = client.post(f"/api/v1/conversations/{acme['conversation']}/spam", headers=key).json()
    assert (marked["status"], marked["flags"], marked["addresses"]) == ("closed", ["spam"], ["jean@example.com"])
    row = received(app, tenant_ids, "acme", message_id="<again@example.com>", subject="Re: acme secret price list",
                   headers={"In-Reply-To": "<jean-acme@example.com>"})
    inbox = client.get("/api/v1/inbox", headers=key).json()
    assert [(m["id"], m["flags"]) for m in inbox] == [(row, ["blocked"])]
    globex_row = received(app, tenant_ids, "globex", message_id="<again@example.net>",
                          subject="Re: globex secret price list", headers={"In-Reply-To": "<jean-globex@example.com>"})
    assert message(app, globex_row).conversation_id == people["globex"]["conversation"]  # blocks are per tenant
    lifted = client.post(f"/api/v1/conversations/{acme['conversation']}/unspam", headers=key).json()
    assert (lifted["status"], lifted["flags"]) == ("open", [])


def test_move_into_another_contacts_conversation_needs_force(client: TestClient, app: App, keys: dict[str, str],
                                                            people: dict[str, dict[str, int]]) -> None:
    acme, key = people["acme"], auth(keys["acme"])
    url = f"/api/v1/messages/{acme['message']}/move"
    refused = client.post(url, json={"conversation_id": acme["piet_conversation"]}, headers=key)
    assert refused.status_code == 400
    assert refused.json()["error"]["message"] == (
        f"message {acme['message']} is from contact {acme['contact']} (jean@example.com) but conversation "
        f"{acme['piet_conversation']} is contact {acme['other_contact']} (piet@example.org)'s; confirm with --force "
        f'(API: "force": true)')
    moved = client.post(url, json={"conversation_id": acme["piet_conversation"], "force": True}, headers=key).json()
    assert (moved["to_conversation_id"], moved["notice_outbound_id"], moved["emptied"]) == \
        (acme["piet_conversation"], None, True)  # no notice: Jean is not part of Piet's conversation
    emptied = client.get(f"/api/v1/conversations/{acme['conversation']}", headers=key).json()
    assert (emptied["status"], emptied["message_count"]) == ("closed", 0)


def test_new_address_with_a_known_name_is_pointed_out(client: TestClient, app: App, keys: dict[str, str],
                                                      tenant_ids: dict[str, int],
                                                      people: dict[str, dict[str, int]]) -> None:
    row = received(app, tenant_ids, "acme", message_id="<new@example.net>", sender="Jean Dupont <jd@new.example>",
                   subject="Re: acme secret price list", headers={"In-Reply-To": "<jean-acme@example.com>"})
    [waiting] = client.get("/api/v1/inbox", headers=auth(keys["acme"])).json()
    assert (waiting["id"], waiting["flags"]) == (row, ["foreign_sender"])
    assert waiting["similar_contacts"] == [{"contact_id": people["acme"]["contact"], "address": "jean@example.com"}]
    known = client.get(f"/api/v1/messages/{people['acme']['message']}", headers=auth(keys["acme"])).json()
    assert known["similar_contacts"] == []
