"""Web fixtures: an operator token, one API key per tenant, an HTTP client over the real app."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from postroom.app import App
from postroom.model import Envelope
from postroom.settings import Settings
from postroom.storage import apikeys, inbound
from postroom.storage.intake import IntakeItem, store_batch
from postroom.testing import make_eml
from postroom.web import create_app

OPERATOR_TOKEN = "operator-test-token-0123456789"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(operator_token=OPERATOR_TOKEN)


@pytest.fixture
def keys(app: App, tenant_ids: dict[str, int]) -> dict[str, str]:
    """One live API key per tenant (acme, globex)."""
    with app.session() as session:
        return {slug: apikeys.create_key(session, slug, "tests")[1] for slug in tenant_ids}


@pytest.fixture
def dispatched() -> list[int]:
    return []


@pytest.fixture
def dispatched_outbound() -> list[int]:
    return []


@pytest.fixture
def client(app: App, dispatched: list[int], dispatched_outbound: list[int]) -> Iterator[TestClient]:
    with TestClient(create_app(app, dispatched.extend, dispatched_outbound.extend),
                    raise_server_exceptions=False) as test_client:
        yield test_client


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def store_mail(app: App, tenant_id: int, slug: str, **eml: object) -> int:
    """Store one message through the real intake (blob + row), as the gateway does; return its id."""
    rcpt = f"inbox@{slug}.mail.test"
    raw = make_eml(to=rcpt, **eml)  # type: ignore[arg-type]
    item = IntakeItem(raw=raw, envelope=Envelope(mail_from="jean@example.com", rcpt_tos=(rcpt,), peer="127.0.0.1",
                                                 received_at=datetime.now(UTC)),
                      tenant_rcpts={tenant_id: (rcpt,)})
    return store_batch(app.sessions, app.blobs, [item])[0][0]


def fail(app: App, inbound_id: int, error: str = "RuntimeError: storage hiccup") -> None:
    """Put a row where a pipeline run that ran out of attempts leaves it."""
    with app.session() as session:
        assert inbound.claim(session, inbound_id) is not None
        inbound.record_error(session, inbound_id, error, final=True)
