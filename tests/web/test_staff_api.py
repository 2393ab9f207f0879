"""What staff do through the portal: filter, reply, mention, mark read, recategorise, change in bulk.

Conversations are built by the real pipeline; replies go through the real
outbound actions, and once through the running service to a real SMTP relay.
"""

from __future__ import annotations

import email
import email.policy
import socket
from collections.abc import Iterator

import httpx
import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient

from postroom import flow
from postroom.app import App
from postroom.service import Service
from postroom.settings import Settings
from postroom.storage import conversation_views, staff
from postroom.storage import outbound as outbound_store
from postroom.storage.mentions import find_mentions
from postroom.storage.staff import StaffUserInfo
from postroom.storage.tables import Conversation
from postroom.testing import wait_until

from .conftest import OPERATOR_TOKEN, auth, store_mail
from .test_health_metrics import samples, value


def received(app: App, tenant_id: int, slug: str, **eml: object) -> int:
    """One customer message through the real pipeline; the id of the conversation it landed in."""
    inbound_id = store_mail(app, tenant_id, slug, **eml)
    assert flow.process_inbound(app, inbound_id) == "done"
    with app.session() as session:
        return conversation_views.list_conversations(session, slug, limit=1)[0].id


@pytest.fixture
def people(app: App, tenant_ids: dict[str, int]) -> dict[str, int]:
    with app.session() as session:
        anna = staff.add_user(session, "acme", email="anna@acme.example", name="Anna Smith").id
        bob = staff.add_user(session, "acme", email="bob.stone@acme.example", name="Bob Stone").id
        team = staff.add_team(session, "acme", "After-sales", members=(bob,)).id
        zoe = staff.add_user(session, "globex", email="zoe@globex.example", name="Zoe Anna").id
    return {"anna": anna, "bob": bob, "team": team, "zoe": zoe}


def ids(page: dict) -> list[int]:
    return [c["id"] for c in page["items"]]


def user(uid: int, name: str, email_: str, active: bool = True) -> StaffUserInfo:
    return StaffUserInfo(uid, 1, email_, name, "", "", active)


def test_mentions_are_found_by_email_name_and_alias_only() -> None:
    anna, bob, ann = (user(1, "Anna Smith", "anna@acme.example"), user(2, "Bob Stone", "bob.stone@acme.example"),
                      user(3, "Anna Karenina", "ak@acme.example"))
    users = [anna, bob, ann]
    assert find_mentions("@Anna Smith, can you ask @bob.stone@acme.example?", users) == [anna, bob]
    assert find_mentions("cc @annasmith and @anna.smith and @ANNA", users) == [anna]
    assert find_mentions("@bob: done. @Bob again", users) == [bob]
    assert find_mentions("@Anna alone is ambiguous", users) == []
    assert find_mentions("mail me at x@anna or @home, @annasmithy", users) == []
    assert find_mentions("ping @ak!", users) == [ann]


def test_note_mentions_raise_events_that_the_portal_reads_and_marks_delivered(
        client: TestClient, app: App, keys: dict[str, str], tenant_ids: dict[str, int],
        people: dict[str, int]) -> None:
    key = auth(keys["acme"])
    conv = received(app, tenant_ids["acme"], "acme", subject="Broken window")
    note = client.post(f"/api/v1/conversations/{conv}/notes", headers=key, json={
        "user_id": people["anna"], "text": "@Bob Stone please call them; @Anna Smith is me, @zoe is not ours"})
    assert note.status_code == 201 and note.json()["internal"] is True
    assert note.json()["mentioned_user_ids"] == [people["bob"]]

    mine = client.get("/api/v1/notifications", params={"user_id": people["bob"], "pending": True}, headers=key).json()
    assert [(e["kind"], e["conversation_id"], e["message_id"]) for e in mine] == [
        ("mention", conv, note.json()["id"])]
    assert mine[0]["payload"]["by_name"] == "Anna Smith" and "please call them" in mine[0]["payload"]["excerpt"]
    assert client.get("/api/v1/notifications", params={"user_id": people["anna"]}, headers=key).json() == []

    assign = client.patch(f"/api/v1/conversations/{conv}", json={"responsible_team_id": people["team"]}, headers=key)
    assert assign.status_code == 200
    client.patch(f"/api/v1/conversations/{conv}", json={"responsible_user_id": people["anna"]}, headers=key)
    anna_events = client.get("/api/v1/notifications", params={"user_id": people["anna"]}, headers=key).json()
    assert [e["kind"] for e in anna_events] == ["assigned"]

    everything = client.get("/api/v1/notifications", headers=key).json()
    assert {"new_conversation", "mention", "assigned"} <= {e["kind"] for e in everything}
    done = client.post("/api/v1/notifications/delivered", json={"ids": [mine[0]["id"]]}, headers=key)
    assert done.json() == {"delivered": [mine[0]["id"]]}
    assert client.get("/api/v1/notifications", params={"user_id": people["bob"], "pending": True},
                      headers=key).json() == []
    later = client.get("/api/v1/notifications", params={"after_id": mine[0]["id"]}, headers=key).json()
    assert all(e["id"] > mine[0]["id"] for e in later) and later


def test_notifications_stay_in_the_tenant(client: TestClient, app: App, keys: dict[str, str],
                                          tenant_ids: dict[str, int], people: dict[str, int]) -> None:
    received(app, tenant_ids["globex"], "globex", subject="Globex secret offer")
    globex_events = client.get("/api/v1/notifications", headers=auth(keys["globex"])).json()
    assert globex_events
    acme = client.get("/api/v1/notifications", headers=auth(keys["acme"]))
    assert acme.status_code == 200 and acme.json() == []
    foreign_user = client.get("/api/v1/notifications", params={"user_id": people["zoe"]}, headers=auth(keys["acme"]))
    assert foreign_user.status_code == 404
    refused = client.post("/api/v1/notifications/delivered", json={"ids": [globex_events[0]["id"]]},
                          headers=auth(keys["acme"]))
    assert refused.status_code == 404 and "secret" not in refused.text
    pending = client.get("/api/v1/notifications", params={"pending": True}, headers=auth(keys["globex"])).json()
    assert [e["id"] for e in pending] == [e["id"] for e in globex_events]


def test_filters_pagination_and_search(client: TestClient, app: App, keys: dict[str, str],
                                       tenant_ids: dict[str, int], people: dict[str, int]) -> None:
    key, acme = auth(keys["acme"]), tenant_ids["acme"]
    leak = received(app, acme, "acme", subject="Leak in the bathroom", body="Water drips from the 100% wet ceiling.")
    keys_conv = received(app, acme, "acme", subject="Keys for unit 4B", sender="Piet <piet@example.org>")
    invoice = received(app, acme, "acme", subject="Invoice question", sender="Ann <ann@supplier.be>")
    received(app, tenant_ids["globex"], "globex", subject="Leak at globex")
    client.patch(f"/api/v1/conversations/{leak}", json={"category": "repairs", "responsible_user_id": people["anna"]},
                 headers=key)
    client.patch(f"/api/v1/conversations/{keys_conv}", json={"responsible_team_id": people["team"],
                                                             "status": "in_progress"}, headers=key)
    client.post(f"/api/v1/conversations/{invoice}/read", json={"read": True}, headers=key)
    assert client.post(f"/api/v1/conversations/{invoice}/replies", headers=key,
                       data={"user_id": str(people["bob"]), "text": "Paid yesterday."}).status_code == 201
    with app.session() as session:  # the unit comes from the contact or a rule; set it as they would
        session.get(Conversation, keys_conv).unit_ref = "4B"

    def find(**params: object) -> dict:
        response = client.get("/api/v1/conversations", params=params, headers=key)
        assert response.status_code == 200, response.text
        return response.json()

    everything = find()
    assert everything["total"] == 3 and set(ids(everything)) == {leak, keys_conv, invoice}
    assert ids(find(status="in_progress")) == [keys_conv]
    assert ids(find(category="repairs")) == [leak]
    assert ids(find(responsible_user_id=people["anna"])) == [leak]
    assert ids(find(responsible_team_id=people["team"])) == [keys_conv]
    assert set(ids(find(responsible_user_id=people["bob"]))) == {invoice}  # the first replier owns it
    assert ids(find(unassigned=True)) == []
    assert set(ids(find(unread=True))) == {leak, keys_conv} and ids(find(unread=False)) == [invoice]
    assert set(ids(find(unanswered=True))) == {leak, keys_conv} and ids(find(unanswered=False)) == [invoice]
    assert ids(find(contact="PIET@example.org")) == [keys_conv]
    assert ids(find(unit="4B")) == [keys_conv]
    assert ids(find(q="bathroom")) == [leak]
    assert ids(find(q="DRIPS")) == [leak]
    assert ids(find(q="100%")) == [leak] and ids(find(q="%")) == [leak]
    assert ids(find(q="paid yesterday")) == [invoice]
    assert ids(find(q="globex")) == []
    assert ids(find(q="leak", category="repairs", unread=True)) == [leak]
    first, second = find(limit=2), find(limit=2, offset=2)
    assert first["total"] == second["total"] == 3 and len(first["items"]) == 2 and len(second["items"]) == 1
    assert set(ids(first)) | set(ids(second)) == {leak, keys_conv, invoice}
    bad = client.get("/api/v1/conversations", params={"unread": "maybe"}, headers=key)
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "unread"


def test_category_subject_bulk_and_mark_read(client: TestClient, app: App, keys: dict[str, str],
                                             tenant_ids: dict[str, int], people: dict[str, int]) -> None:
    key = auth(keys["acme"])
    one = received(app, tenant_ids["acme"], "acme", subject="Heating")
    two = received(app, tenant_ids["acme"], "acme", subject="Parking", sender="Piet <piet@example.org>")
    foreign = received(app, tenant_ids["globex"], "globex", subject="Globex secret")
    changed = client.patch(f"/api/v1/conversations/{one}", json={"category": "repairs", "subject": "Heating  broken"},
                           headers=key).json()
    assert changed["category"] == "repairs" and changed["subject"] == "Heating broken"
    cleared = client.patch(f"/api/v1/conversations/{one}", json={"category": None}, headers=key).json()
    assert cleared["category"] is None and cleared["subject"] == "Heating broken"
    assert client.patch(f"/api/v1/conversations/{one}", json={"subject": ""}, headers=key).status_code == 422

    bulk = client.post("/api/v1/conversations/bulk", headers=key, json={
        "ids": [one, two], "status": "closed", "category": "done", "responsible_user_id": people["bob"]})
    assert bulk.status_code == 200 and bulk.json() == {"updated": [one, two]}
    page = client.get("/api/v1/conversations", params={"status": "closed", "category": "done"}, headers=key).json()
    assert set(ids(page)) == {one, two} and {c["responsible_user_id"] for c in page["items"]} == {people["bob"]}
    mixed = client.post("/api/v1/conversations/bulk", json={"ids": [one, foreign], "status": "open"}, headers=key)
    assert mixed.status_code == 404 and "secret" not in mixed.text
    assert client.get(f"/api/v1/conversations/{one}", headers=key).json()["status"] == "closed"
    with app.session() as session:
        assert conversation_views.get_conversation(session, foreign)[0].status == "open"
    nothing = client.post("/api/v1/conversations/bulk", json={"ids": [one]}, headers=key)
    assert nothing.status_code == 400
    wrong_user = client.post("/api/v1/conversations/bulk", json={"ids": [one], "responsible_user_id": people["zoe"]},
                             headers=key)
    assert wrong_user.status_code == 400

    message = client.get(f"/api/v1/conversations/{one}", headers=key).json()["messages"][0]
    assert message["is_read"] is False
    assert client.post(f"/api/v1/messages/{message['id']}/read", json={"read": True}, headers=key).json()["is_read"]
    assert ids(client.get("/api/v1/conversations", params={"unread": True}, headers=key).json()) == [two]
    marked = client.post(f"/api/v1/conversations/{one}/read", json={"read": False}, headers=key).json()
    assert marked == {"changed": 1}
    assert set(ids(client.get("/api/v1/conversations", params={"unread": True}, headers=key).json())) == {one, two}


def test_staff_reply_with_attachments_is_queued_and_dispatched(client: TestClient, app: App, keys: dict[str, str],
                                                               tenant_ids: dict[str, int], people: dict[str, int],
                                                               dispatched_outbound: list[int]) -> None:
    key = auth(keys["acme"])
    conv = received(app, tenant_ids["acme"], "acme", subject="Floor plan please")
    response = client.post(f"/api/v1/conversations/{conv}/replies", headers=key,
                           data={"user_id": str(people["anna"]), "text": "Here is the plan.",
                                 "status": "awaiting_feedback"},
                           files=[("files", ("../../etc/plan 4B.pdf", b"%PDF-1.4 plan", "application/pdf")),
                                  ("files", ("C:\\Users\\anna\\notes.txt", b"measure twice", "text/plain"))])
    assert response.status_code == 201, response.text
    body = response.json()
    assert dispatched_outbound == [body["outbound_id"]] and body["outbound_status"] == "queued"
    assert body["message"]["direction"] == "out" and body["message"]["internal"] is False
    assert body["message"]["text"] == "Here is the plan." and body["message"]["author_email"] == "anna@acme.example"
    with app.session() as session:
        record = outbound_store.get_outbound(session, body["outbound_id"])
        summary, messages = conversation_views.get_conversation(session, conv)
    assert record.conversation_id == conv and record.staff_email == "anna@acme.example"
    assert [r.address for r in record.recipients] == ["jean@example.com"]
    assert [(a.filename, a.content_type) for a in record.attachments] == [("plan 4B.pdf", "application/pdf"),
                                                                          ("notes.txt", "text/plain")]
    assert app.blobs.get(record.attachments[0].sha256) == b"%PDF-1.4 plan"
    assert record.message_id == messages[-1].message_id
    assert summary.status == "awaiting_feedback" and messages[0].is_answered

    empty = client.post(f"/api/v1/conversations/{conv}/replies", headers=key,
                        data={"user_id": str(people["anna"]), "text": "   "})
    assert empty.status_code == 400
    foreign = client.post(f"/api/v1/conversations/{conv}/replies", headers=key,
                          data={"user_id": str(people["zoe"]), "text": "hi"})
    assert foreign.status_code == 400 and "staff user" in foreign.json()["error"]["message"]
    with app.session() as session:
        staff.update_user(session, people["bob"], active=False)
    inactive = client.post(f"/api/v1/conversations/{conv}/replies", headers=key,
                           data={"user_id": str(people["bob"]), "text": "hi"})
    assert inactive.status_code == 400
    missing = client.post(f"/api/v1/conversations/{conv}/replies", headers=key, data={"text": "hi"})
    assert missing.status_code == 422 and missing.json()["error"]["fields"][0]["field"] == "user_id"
    assert dispatched_outbound == [body["outbound_id"]]


class Relay:
    """A minimal SMTP relay on 127.0.0.1 keeping what it accepts."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.messages.append(email.message_from_bytes(envelope.original_content,  # type: ignore[attr-defined]
                                                      policy=email.policy.default))
        return "250 2.0.0 queued"


@pytest.fixture
def relayed(settings: Settings, tenant_ids: dict[str, int]) -> Iterator[tuple[Service, Relay]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    relay = Relay()
    controller = Controller(relay, hostname="127.0.0.1", port=port)
    controller.start()
    svc = Service(settings.replace(outbound_url=f"smtp://127.0.0.1:{port}?timeout=5")).start()
    if settings.broker_url:
        svc.pipeline.broker.flush_all()
    try:
        yield svc, relay
    finally:
        svc.stop()
        controller.stop()


def test_reply_through_the_running_service_is_sent_counted_and_shown(relayed: tuple[Service, Relay],
                                                                     tenant_ids: dict[str, int],
                                                                     keys: dict[str, str]) -> None:
    svc, relay = relayed
    with svc.app.session() as session:
        anna = staff.add_user(session, "acme", email="anna@acme.example", name="Anna Smith").id
    conv = received(svc.app, tenant_ids["acme"], "acme", subject="Keys for unit 4B")
    before = httpx.get(f"{svc.http_url}/metrics").text
    response = httpx.post(f"{svc.http_url}/api/v1/conversations/{conv}/replies", headers=auth(keys["acme"]),
                          data={"user_id": str(anna), "text": "They are at the front desk."})
    assert response.status_code == 201, response.text
    outbound_id = response.json()["outbound_id"]
    [sent] = wait_until(lambda: relay.messages, timeout=15)
    assert "They are at the front desk." in sent.get_body(("plain",)).get_content()
    assert sent["Subject"].endswith("]") and sent["To"].endswith("<jean@example.com>")

    def status() -> str | None:
        with svc.app.session() as session:
            found = outbound_store.get_outbound(session, outbound_id).status
        return found if found == "sent" else None

    wait_until(status, timeout=15)
    after = httpx.get(f"{svc.http_url}/metrics").text
    assert value(before, "postroom_outbound_messages", status="sent") == 0
    assert value(after, "postroom_outbound_messages", status="sent") == 1
    assert value(after, "postroom_outbound_messages", status="failed") == 0
    assert ("postroom_outbound_messages", (("status", "bounced"),)) in samples(after)

    with httpx.Client(base_url=svc.http_url, follow_redirects=True) as browser:
        browser.post("/console/login", data={"token": OPERATOR_TOKEN})
        page = browser.get("/console", params={"tenant": "acme"}).text
    row = page[page.index(f'id="outbound-{outbound_id}"'):]
    row = row[:row.index("</tr>")]
    assert "status-sent" in row and "jean@example.com" in row and "Keys for unit 4B" in row
