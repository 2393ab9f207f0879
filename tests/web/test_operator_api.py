"""Operator API and console over HTTP: token checks, queue shape, retry/drop/hold/release."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from postroom.app import App
from postroom.web import create_app

from .conftest import OPERATOR_TOKEN, auth, fail, store_mail

OPERATOR = auth(OPERATOR_TOKEN)


def test_operator_api_needs_the_operator_token(client: TestClient, keys: dict[str, str]) -> None:
    assert client.get("/api/operator/queue").status_code == 401
    assert client.get("/api/operator/queue", headers=auth("wrong")).status_code == 401
    assert client.get("/api/operator/queue", headers=auth(keys["acme"])).status_code == 401
    assert client.get("/api/operator/queue", headers=OPERATOR).status_code == 200


def test_operator_access_is_off_without_a_configured_token(app: App) -> None:
    app.settings = app.settings.replace(operator_token="")
    with TestClient(create_app(app)) as client:
        response = client.get("/api/operator/queue", headers=auth(""))
        assert response.status_code in (401, 403)
        assert client.get("/api/operator/queue", headers=auth("anything")).json()["error"]["status"] == 403
        assert "POSTROOM_OPERATOR_TOKEN" in client.get("/console").text


def test_queue_shape_has_age_buckets_and_tenant_filter(client: TestClient, app: App,
                                                       tenant_ids: dict[str, int]) -> None:
    store_mail(app, tenant_ids["acme"], "acme", subject="one")
    store_mail(app, tenant_ids["acme"], "acme", subject="two")
    fail(app, store_mail(app, tenant_ids["globex"], "globex", subject="three"))
    shape = client.get("/api/operator/queue", headers=OPERATOR).json()
    by_status = {line["status"]: line for line in shape}
    assert by_status["pending"]["count"] == 2
    assert by_status["pending"]["ages"] == {"<5m": 2, "<1h": 0, "<1d": 0, "older": 0}
    assert by_status["failed"]["count"] == 1 and by_status["failed"]["oldest_age_seconds"] >= 0
    only_acme = client.get("/api/operator/queue", params={"tenant": "acme"}, headers=OPERATOR).json()
    assert [(line["status"], line["count"]) for line in only_acme] == [("pending", 2)]


def test_retry_sets_pending_and_dispatches(client: TestClient, app: App, tenant_ids: dict[str, int],
                                           dispatched: list[int]) -> None:
    inbound_id = store_mail(app, tenant_ids["acme"], "acme")
    fail(app, inbound_id)
    failed = client.get("/api/operator/inbound", params={"status": "failed"}, headers=OPERATOR).json()
    assert [(r["id"], r["last_error"]) for r in failed] == [(inbound_id, "RuntimeError: storage hiccup")]
    retried = client.post(f"/api/operator/inbound/{inbound_id}/retry", headers=OPERATOR).json()
    assert retried["status"] == "pending" and retried["attempts"] == 0
    assert dispatched == [inbound_id]


@pytest.mark.parametrize(("start", "action", "expected"), [
    ("failed", "drop", "dropped"), ("pending", "hold", "held"), ("held", "release", "pending"),
])
def test_drop_hold_release(client: TestClient, app: App, tenant_ids: dict[str, int], start: str, action: str,
                           expected: str) -> None:
    inbound_id = store_mail(app, tenant_ids["acme"], "acme")
    if start == "failed":
        fail(app, inbound_id)
    if start == "held":
        client.post(f"/api/operator/inbound/{inbound_id}/hold", headers=OPERATOR)
    response = client.post(f"/api/operator/inbound/{inbound_id}/{action}", headers=OPERATOR)
    assert response.status_code == 200 and response.json()["status"] == expected


def test_actions_refuse_wrong_states_and_unknown_ids(client: TestClient, app: App,
                                                     tenant_ids: dict[str, int]) -> None:
    inbound_id = store_mail(app, tenant_ids["acme"], "acme")
    refused = client.post(f"/api/operator/inbound/{inbound_id}/release", headers=OPERATOR)
    assert refused.status_code == 400 and "needs one of: held" in refused.json()["error"]["message"]
    assert client.post("/api/operator/inbound/999999/retry", headers=OPERATOR).status_code == 404
    bad = client.post(f"/api/operator/inbound/{inbound_id}/explode", headers=OPERATOR)
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "action"


def test_console_login_page_then_cookie(client: TestClient, app: App, tenant_ids: dict[str, int]) -> None:
    page = client.get("/console")
    assert page.status_code == 401 and 'name="token"' in page.text
    assert client.post("/console/login", data={"token": "nope"}).status_code == 401
    signed_in = client.post("/console/login", data={"token": OPERATOR_TOKEN}, follow_redirects=False)
    assert signed_in.status_code == 303
    cookie = signed_in.cookies["postroom_console"]
    assert OPERATOR_TOKEN not in cookie
    assert "samesite=strict" in signed_in.headers["set-cookie"].lower()
    assert "httponly" in signed_in.headers["set-cookie"].lower()
    inbound_id = store_mail(app, tenant_ids["globex"], "globex")
    fail(app, inbound_id, "ValueError: <script>alert(1)</script>")
    page = client.get("/console", params={"tenant": "globex"})
    assert page.status_code == 200
    assert "ValueError: &lt;script&gt;alert(1)&lt;/script&gt;" in page.text and "<script>alert" not in page.text
    assert f'action="/console/inbound/{inbound_id}/retry"' in page.text
    assert "Recent outbound" in page.text and "Nothing sent yet." in page.text
    done = client.post(f"/console/inbound/{inbound_id}/drop", data={"tenant": "globex"})
    assert done.status_code == 200 and f"inbound {inbound_id}: drop done, now dropped" in done.text
    assert f'action="/console/inbound/{inbound_id}/retry"' not in done.text
    client.post("/console/logout")
    assert client.get("/console").status_code == 401


def test_console_forms_need_the_cookie(client: TestClient, app: App, tenant_ids: dict[str, int]) -> None:
    inbound_id = store_mail(app, tenant_ids["acme"], "acme")
    fail(app, inbound_id)
    response = client.post(f"/console/inbound/{inbound_id}/retry", follow_redirects=False)
    assert response.status_code == 401
    assert client.get(f"/api/operator/inbound/{inbound_id}", headers=OPERATOR).json()["status"] == "failed"


def test_console_shows_each_mailbox_with_its_state(client: TestClient, app: App, tenant_ids: dict[str, int]) -> None:
    from postroom.storage import ingress

    with app.session() as session:
        box = ingress.add_mailbox(session, "acme", "imaps://support@imap.example/INBOX", auth="password",
                                  secret="s3cret-value", after="seen")
        ingress.record_failure(session, box.id, "LOGIN failed: <b>bad password</b>")
    client.post("/console/login", data={"token": OPERATOR_TOKEN})
    page = client.get("/console")
    row = page.text.split(f'id="mailbox-{box.id}"')[1].split("</tr>")[0]
    assert "imaps://support@imap.example/INBOX" in row and "never" in row
    assert "LOGIN failed: &lt;b&gt;bad password&lt;/b&gt;" in row and "s3cret-value" not in page.text
