"""Property-based requests generated from the published OpenAPI schema: no input makes the server fail.

Bounded (a few examples per operation) so it stays a quick test; each request
carries the credentials its area needs, so the handlers themselves are reached.
Hypothesis drives schemathesis' strategies directly: its pytest plugin does
not load under this pytest version.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from postroom import flow
from postroom.app import App
from postroom.storage import staff
from postroom.web import create_app

from .conftest import OPERATOR_TOKEN, fail, store_mail

EXAMPLES = 8


def test_no_generated_request_causes_a_server_error(app: App, tenant_ids: dict[str, int],
                                                    keys: dict[str, str]) -> None:
    fail(app, store_mail(app, tenant_ids["acme"], "acme"))
    store_mail(app, tenant_ids["globex"], "globex")
    # small ids (which hypothesis tries first) name real rows: conversation, message, staff user, events
    assert flow.process_inbound(app, store_mail(app, tenant_ids["acme"], "acme", subject="Keys")) == "done"
    with app.session() as session:
        staff.add_user(session, "acme", email="anna@acme.example", name="Anna")
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(app))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10

    for operation in operations:
        check(operation, OPERATOR_TOKEN if operation.path.startswith("/api/operator") else keys["acme"])


def check(operation, token: str) -> None:  # type: ignore[no-untyped-def]
    """Call one operation with generated inputs and the given credentials."""

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck), database=None)
    def call(case) -> None:  # type: ignore[no-untyped-def]
        response = case.call(headers={"Authorization": f"Bearer {token}"})
        assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text[:300]}"
        if response.status_code >= 400:
            assert response.json()["error"]["message"]

    call()
