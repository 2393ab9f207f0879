"""The tenant API: authentication, the JSON error shape, and that a key never reaches another tenant."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from postroom.app import App
from postroom.storage import apikeys

from .conftest import auth, store_mail

# Every tenant-scoped operation, with how to address a row of the *other* tenant.
# test_every_tenant_route_is_isolation_tested keeps this table complete.
ISOLATION = {
    ("GET", "/api/v1/inbound/{inbound_id}"): lambda ids: f"/api/v1/inbound/{ids['inbound']}",
    ("GET", "/api/v1/inbound/{inbound_id}/raw"): lambda ids: f"/api/v1/inbound/{ids['inbound']}/raw",
}
LISTS = {
    ("GET", "/api/v1/inbound"): "/api/v1/inbound",
    ("GET", "/api/v1/me"): "/api/v1/me",
}


@pytest.fixture
def globex_ids(app: App, tenant_ids: dict[str, int]) -> dict[str, int]:
    return {"inbound": store_mail(app, tenant_ids["globex"], "globex", subject="Globex only: secret price list")}


def test_every_tenant_route_is_isolation_tested(client: TestClient) -> None:
    routes = {(method.upper(), path) for path, ops in client.get("/openapi.json").json()["paths"].items()
              for method, op in ops.items() if {"TenantKey": []} in op.get("security", [])
              and (path.startswith("/api/v1/inbound") or path == "/api/v1/me")}
    assert routes == set(ISOLATION) | set(LISTS)


@pytest.mark.parametrize("route", sorted(ISOLATION))
def test_key_of_one_tenant_cannot_reach_another_tenants_rows(client: TestClient, keys: dict[str, str],
                                                             globex_ids: dict[str, int],
                                                             route: tuple[str, str]) -> None:
    url = ISOLATION[route](globex_ids)
    assert client.request(route[0], url, headers=auth(keys["globex"])).status_code == 200
    refused = client.request(route[0], url, headers=auth(keys["acme"]))
    assert refused.status_code == 404
    assert "secret" not in refused.text
    assert refused.json()["error"]["status"] == 404


@pytest.mark.parametrize("route", sorted(LISTS))
def test_lists_only_show_the_keys_tenant(client: TestClient, app: App, keys: dict[str, str],
                                         tenant_ids: dict[str, int], globex_ids: dict[str, int],
                                         route: tuple[str, str]) -> None:
    store_mail(app, tenant_ids["acme"], "acme", subject="Acme: key handover")
    acme = client.request(route[0], LISTS[route], headers=auth(keys["acme"]))
    assert acme.status_code == 200
    assert "globex" not in acme.text and "secret price list" not in acme.text
    assert "acme" in acme.text


@pytest.mark.parametrize("route", sorted(ISOLATION) + sorted(LISTS))
def test_every_tenant_route_needs_a_valid_key(client: TestClient, globex_ids: dict[str, int],
                                              route: tuple[str, str]) -> None:
    url = ISOLATION[route](globex_ids) if route in ISOLATION else LISTS[route]
    for headers in ({}, auth("pr_not-a-real-key"), auth("garbage"), {"Authorization": "Basic Zm9vOmJhcg=="}):
        response = client.request(route[0], url, headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["message"]


def test_revoked_key_stops_working_at_once(client: TestClient, app: App, keys: dict[str, str]) -> None:
    assert client.get("/api/v1/me", headers=auth(keys["acme"])).json()["tenant"] == "acme"
    with app.session() as session:
        key_id = next(k.id for k in apikeys.list_keys(session, "acme"))
        apikeys.revoke_key(session, key_id)
    assert client.get("/api/v1/me", headers=auth(keys["acme"])).status_code == 401


def test_keys_are_hashed_at_rest_and_shown_once(app: App, tenant_ids: dict[str, int]) -> None:
    with app.session() as session:
        info, key = apikeys.create_key(session, "acme", "portal")
    with app.engine.connect() as conn:
        dump = "\n".join(str(row) for row in conn.exec_driver_sql("SELECT * FROM api_keys"))
    assert key not in dump and key[apikeys.PREFIX_LEN:] not in dump
    assert apikeys.hash_key(key) in dump
    assert info.prefix == key[:apikeys.PREFIX_LEN]


def test_inbound_list_show_and_raw_download(client: TestClient, app: App, keys: dict[str, str],
                                            tenant_ids: dict[str, int]) -> None:
    inbound_id = store_mail(app, tenant_ids["acme"], "acme", subject="Snag list for unit 12")
    listed = client.get("/api/v1/inbound", params={"status": "pending"}, headers=auth(keys["acme"])).json()
    assert [row["id"] for row in listed] == [inbound_id]
    shown = client.get(f"/api/v1/inbound/{inbound_id}", headers=auth(keys["acme"])).json()
    assert shown["tenant"] == "acme" and shown["status"] == "pending" and shown["rcpt_tos"] == ["inbox@acme.mail.test"]
    raw = client.get(f"/api/v1/inbound/{inbound_id}/raw", headers=auth(keys["acme"]))
    assert raw.headers["content-type"] == "message/rfc822"
    assert raw.headers["content-disposition"] == f'attachment; filename="inbound-{inbound_id}.eml"'
    assert b"Subject: Snag list for unit 12" in raw.content


def test_validation_errors_name_the_field(client: TestClient, keys: dict[str, str]) -> None:
    response = client.get("/api/v1/inbound", params={"limit": "lots"}, headers=auth(keys["acme"]))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["fields"][0]["field"] == "limit" and error["fields"][0]["location"] == "query"
    assert error["message"].startswith("invalid request: limit:")
    too_big = client.get("/api/v1/inbound/99999999999999999999", headers=auth(keys["acme"]))
    assert too_big.status_code == 422 and too_big.json()["error"]["fields"][0]["field"] == "inbound_id"


def test_unknown_paths_answer_json(client: TestClient) -> None:
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json() == {"error": {"status": 404, "message": "Not Found", "fields": []}}
