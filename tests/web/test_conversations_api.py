"""Conversations, inbox, notes, moves, attachments, exports and rules over HTTP, built by the real pipeline.

Every route is checked for tenant isolation: a globex row asked for with an
acme key is a 404, and acme's lists never show globex rows.
"""

from __future__ import annotations

from email.message import EmailMessage

import pytest
from fastapi.testclient import TestClient

from postroom import flow
from postroom.app import App
from postroom.model import Envelope
from postroom.storage import conversation_views, staff
from postroom.storage.intake import IntakeItem, store_batch

from .conftest import auth, store_mail

HOSTILE_NAME = 'plan "unit 4B";x=1 é.pdf'


def received(app: App, tenant_ids: dict[str, int], slug: str, **eml: object) -> int:
    """Store a message and run it through the real pipeline; return its conversation id."""
    inbound_id = store_mail(app, tenant_ids[slug], slug, **eml)
    assert flow.process_inbound(app, inbound_id) == "done"
    with app.session() as session:
        return conversation_views.list_conversations(session, slug, limit=1)[0].id


def with_attachment(slug: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Jean Dupont <jean@example.com>"
    msg["To"] = f"inbox@{slug}.mail.test"
    msg["Subject"] = "Floor plan"
    msg["Message-ID"] = f"<plan-{slug}@example.com>"
    msg.set_content("See the attached plan.")
    msg.add_attachment(b"%PDF-1.4 plan bytes", maintype="application", subtype="pdf", filename=HOSTILE_NAME)
    return msg.as_bytes()


@pytest.fixture
def world(app: App, tenant_ids: dict[str, int]) -> dict[str, dict[str, int]]:
    """Per tenant: a conversation with an attachment, a staff user, and a second conversation."""
    ids: dict[str, dict[str, int]] = {}
    for slug in ("acme", "globex"):
        rcpt = f"inbox@{slug}.mail.test"
        inbound_id = store_batch(app.sessions, app.blobs, [IntakeItem(
            raw=with_attachment(slug), envelope=Envelope(mail_from="jean@example.com", rcpt_tos=(rcpt,)),
            tenant_rcpts={tenant_ids[slug]: (rcpt,)})])[0][0]
        assert flow.process_inbound(app, inbound_id) == "done"
        with app.session() as session:
            conversation = conversation_views.list_conversations(session, slug, limit=1)[0].id
            message = conversation_views.get_conversation(session, conversation)[1][0].id
            user = staff.add_user(session, slug, email=f"anna@{slug}.example", name="Anna").id
        other = received(app, tenant_ids, slug, subject=f"{slug} secret price list",
                         sender="Piet <piet@example.org>")
        ids[slug] = {"conversation": conversation, "message": message, "user": user, "other": other}
    return ids


# Every route addressing one conversation or message: (method, path template, request arguments).
ROW_ROUTES: list[tuple[str, str, dict]] = [
    ("GET", "/api/v1/conversations/{conversation_id}", {}),
    ("PATCH", "/api/v1/conversations/{conversation_id}", {"json": {"status": "closed", "category": "keys"}}),
    ("POST", "/api/v1/conversations/{conversation_id}/notes", {"json": {"user_id": "{user}", "text": "ask @anna"}}),
    ("POST", "/api/v1/conversations/{conversation_id}/read", {"json": {"read": True}}),
    ("POST", "/api/v1/conversations/{conversation_id}/replies",
     {"data": {"user_id": "{user}", "text": "The keys are ready."},
      "files": [("files", ("a.txt", b"x", "text/plain"))]}),
    ("GET", "/api/v1/conversations/{conversation_id}/export.mbox", {}),
    ("GET", "/api/v1/conversations/{conversation_id}/export.pdf", {}),
    ("GET", "/api/v1/messages/{message_id}", {}),
    ("POST", "/api/v1/messages/{message_id}/read", {"json": {"read": False}}),
    ("GET", "/api/v1/messages/{message_id}/attachments/{index}", {}),
    ("POST", "/api/v1/messages/{message_id}/move", {"json": {"conversation_id": "{other}", "force": True}}),
]
# Routes over the tenant's rows as a whole (lists, bulk changes): checked by test_lists_and_bulk_stay_in_tenant.
TENANT_WIDE = {("GET", "/api/v1/conversations"), ("POST", "/api/v1/conversations/bulk"),
               ("GET", "/api/v1/inbox"), ("GET", "/api/v1/notifications"),
               ("POST", "/api/v1/notifications/delivered")}
# Routes that read no stored rows (rule checks) or write only the key's own tenant's file (test_rules_...).
NO_ROWS = {("POST", "/api/v1/rules/validate"), ("POST", "/api/v1/rules/test"), ("PUT", "/api/v1/rules")}


def _fill(value: object, ids: dict[str, int]) -> object:
    """Put a tenant's ids into a request template ("{user}" -> that tenant's staff user id)."""
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return ids[value[1:-1]]
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


def requests_for(ids: dict[str, int]) -> list[tuple[str, str, str, dict]]:
    values = {"conversation_id": ids["conversation"], "message_id": ids["message"], "index": 0}
    return [(method, template, template.format(**values), _fill(kwargs, ids))
            for method, template, kwargs in ROW_ROUTES]


def test_every_tenant_route_is_isolation_tested(client: TestClient) -> None:
    """A new tenant route must be added to one of the tables above (or to test_tenant_api's)."""
    from .test_people_api import PEOPLE_COVERED
    from .test_tenant_api import ISOLATION, LISTS

    tenant_routes = {(m.upper(), p) for p, ops in client.get("/openapi.json").json()["paths"].items()
                     for m, op in ops.items() if {"TenantKey": []} in op.get("security", [])}
    covered = {(m, t) for m, t, _ in ROW_ROUTES} | TENANT_WIDE | NO_ROWS | set(ISOLATION) | set(LISTS) | PEOPLE_COVERED
    assert tenant_routes == covered


def test_every_conversation_route_is_tenant_isolated(client: TestClient, keys: dict[str, str],
                                                    world: dict[str, dict[str, int]]) -> None:
    for method, template, url, kwargs in requests_for(world["globex"]):
        refused = client.request(method, url, headers=auth(keys["acme"]), **kwargs)
        assert refused.status_code == 404, (method, template, refused.text)
        assert "secret" not in refused.text and "Floor plan" not in refused.text
    for method, template, url, kwargs in requests_for(world["globex"]):
        response = client.request(method, url, headers=auth(keys["globex"]), **kwargs)
        assert response.status_code in (200, 201), (template, response.text)


def test_lists_and_cross_tenant_references(client: TestClient, keys: dict[str, str],
                                           world: dict[str, dict[str, int]]) -> None:
    listed = client.get("/api/v1/conversations", headers=auth(keys["acme"])).json()["items"]
    assert {c["id"] for c in listed} == {world["acme"]["conversation"], world["acme"]["other"]}
    assert "globex" not in str(listed)
    assert client.get("/api/v1/inbox", headers=auth(keys["acme"])).json() == []
    move = client.post(f"/api/v1/messages/{world['acme']['message']}/move",
                       json={"conversation_id": world["globex"]["other"]}, headers=auth(keys["acme"]))
    assert move.status_code == 404
    note = client.post(f"/api/v1/conversations/{world['acme']['conversation']}/notes",
                       json={"user_id": world["globex"]["user"], "text": "x"}, headers=auth(keys["acme"]))
    assert note.status_code == 400 and "staff user" in note.json()["error"]["message"]
    assign = client.patch(f"/api/v1/conversations/{world['acme']['conversation']}",
                          json={"responsible_user_id": world["globex"]["user"]}, headers=auth(keys["acme"]))
    assert assign.status_code == 400


def test_show_note_status_and_assign(client: TestClient, keys: dict[str, str],
                                     world: dict[str, dict[str, int]]) -> None:
    acme, key = world["acme"], auth(keys["acme"])
    note = client.post(f"/api/v1/conversations/{acme['conversation']}/notes",
                       json={"user_id": acme["user"], "text": "Called the customer"}, headers=key)
    assert note.status_code == 201 and note.json()["internal"] is True
    changed = client.patch(f"/api/v1/conversations/{acme['conversation']}",
                           json={"status": "in_progress", "responsible_user_id": acme["user"]}, headers=key).json()
    assert changed["status"] == "in_progress" and changed["responsible_user_id"] == acme["user"]
    assert [(m["direction"], m["internal"]) for m in changed["messages"]] == [("in", False), ("out", True)]
    bad = client.patch(f"/api/v1/conversations/{acme['conversation']}", json={"status": "archived"}, headers=key)
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "status"


def test_move_into_new_conversation(client: TestClient, keys: dict[str, str],
                                    world: dict[str, dict[str, int]]) -> None:
    moved = client.post(f"/api/v1/messages/{world['acme']['message']}/move", json={"new": True},
                        headers=auth(keys["acme"])).json()
    assert moved["created_conversation"] is True and moved["from_conversation_id"] == world["acme"]["conversation"]
    both = client.post(f"/api/v1/messages/{world['acme']['message']}/move", json={"new": True, "conversation_id": 1},
                       headers=auth(keys["acme"]))
    assert both.status_code == 422


def test_attachment_download_is_safe(client: TestClient, keys: dict[str, str],
                                     world: dict[str, dict[str, int]]) -> None:
    response = client.get(f"/api/v1/messages/{world['acme']['message']}/attachments/0", headers=auth(keys["acme"]))
    assert response.content == b"%PDF-1.4 plan bytes"
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["x-content-type-options"] == "nosniff"
    disposition = response.headers["content-disposition"]
    assert disposition == ("attachment; filename=\"plan _unit 4B__x_1 _.pdf\"; "
                           "filename*=UTF-8''plan%20_unit%204B_%3Bx%3D1%20%C3%A9.pdf")
    missing = client.get(f"/api/v1/messages/{world['acme']['message']}/attachments/5", headers=auth(keys["acme"]))
    assert missing.status_code == 404


def test_exports(client: TestClient, keys: dict[str, str], world: dict[str, dict[str, int]]) -> None:
    acme, key = world["acme"], auth(keys["acme"])
    client.post(f"/api/v1/conversations/{acme['conversation']}/notes",
                json={"user_id": acme["user"], "text": "Internal: discount ok"}, headers=key)
    mbox = client.get(f"/api/v1/conversations/{acme['conversation']}/export.mbox", headers=key)
    assert mbox.headers["content-type"] == "application/mbox"
    assert mbox.content.startswith(b"From ") and mbox.content.count(b"\nFrom ") == 1
    assert b"Message-ID: <plan-acme@example.com>" in mbox.content
    assert b"X-Postroom-Internal: yes" in mbox.content and b"Internal: discount ok" in mbox.content
    pdf = client.get(f"/api/v1/conversations/{acme['conversation']}/export.pdf", headers=key)
    assert pdf.headers["content-type"] == "application/pdf" and pdf.content.startswith(b"%PDF-")
    assert ".pdf" in pdf.headers["content-disposition"]


def test_rules_validate_test_and_upload(client: TestClient, app: App, keys: dict[str, str],
                                        tenant_ids: dict[str, int], fixture_bytes) -> None:  # type: ignore[no-untyped-def]
    key = {**auth(keys["acme"]), "Content-Type": "application/yaml"}
    good = fixture_bytes("rules/example.yaml")
    bad = fixture_bytes("rules/invalid.yaml")
    unknown = client.post("/api/v1/rules/validate", content=good, headers=key).json()
    assert unknown["valid"] is False and [e.split(": ")[0] for e in unknown["errors"]] == \
        ["rules.yaml:25:23", "rules.yaml:40:23"]  # the tenant has no team finance, no user lead@acme.example
    with app.session() as session:
        staff.add_team(session, "acme", "finance")
        staff.add_user(session, "acme", email="lead@acme.example", name="Lead")
    assert client.post("/api/v1/rules/validate", content=good, headers=key).json()["valid"] is True
    refused = client.post("/api/v1/rules/validate", content=bad, headers=key).json()
    assert refused["valid"] is False and refused["errors"][0].startswith("rules.yaml:")
    assert client.put("/api/v1/rules", content=bad, headers=key).json()["valid"] is False
    assert not (app.settings.resolved_rules_dir / "acme.yaml").exists()
    assert client.put("/api/v1/rules", content=good, headers=key).json()["valid"] is True
    assert (app.settings.resolved_rules_dir / "acme.yaml").read_bytes() == good
    assert not (app.settings.resolved_rules_dir / "globex.yaml").exists()
    eml = ("From: Ann <ann@supplier.be>\r\nTo: inbox@acme.mail.test\r\nSubject: Invoice 42\r\n"
           "Message-ID: <i42@supplier.be>\r\n\r\nPlease pay.\r\n")
    tested = client.post("/api/v1/rules/test", json={"rules": good.decode(), "message": eml},
                         headers=auth(keys["acme"])).json()
    assert tested["valid"] is True and "Invoices to finance" in str(tested)


def test_nul_characters_are_refused_with_422_naming_the_field(client: TestClient, keys: dict[str, str],
                                                             world: dict[str, dict[str, int]]) -> None:
    acme, key = world["acme"], auth(keys["acme"])
    listed = client.get("/api/v1/conversations", params={"category": "keys\x00", "q": "ok"}, headers=key)
    assert listed.status_code == 422
    assert [(f["field"], f["location"]) for f in listed.json()["error"]["fields"]] == [("category", "query")]
    noted = client.post(f"/api/v1/conversations/{acme['conversation']}/notes",
                        json={"user_id": acme["user"], "text": "nul \x00 inside"}, headers=key)
    assert noted.status_code == 422 and noted.json()["error"]["fields"][0]["location"] == "body"
    fine = client.post(f"/api/v1/conversations/{acme['conversation']}/notes",
                       json={"user_id": acme["user"], "text": "still works"}, headers=key)
    assert fine.status_code == 201
