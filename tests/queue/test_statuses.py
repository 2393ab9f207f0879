"""The inbound transitions table is what the operator actions obey, and statuses stay plain strings in the rows."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from tests.web.conftest import store_mail

from postroom.errors import PostroomError
from postroom.queue import operations
from postroom.statuses import INBOUND_MOVES, RUNNABLE, TERMINAL, InboundStatus
from postroom.storage import inbound


@pytest.mark.parametrize("action", sorted(operations.OPERATIONS))
def test_operator_actions_start_only_where_the_table_says(app, tenant_ids, action: str) -> None:
    move = INBOUND_MOVES[action]
    for status in InboundStatus:
        row = store_mail(app, tenant_ids["acme"], "acme", subject=f"{action} from {status}")
        with app.session() as session:
            inbound.set_status(session, row, status, allowed_from=tuple(InboundStatus))
        if status in move.allowed_from:
            assert operations.apply(app, row, action).status == move.target
        else:
            with pytest.raises(PostroomError, match=f"is {status}; this action needs one of"):
                operations.apply(app, row, action)


def test_statuses_are_stored_as_the_plain_strings(app, tenant_ids) -> None:
    row = store_mail(app, tenant_ids["acme"], "acme")
    operations.apply(app, row, "hold")
    with app.session() as session:
        stored = session.execute(text("select status from inbound_messages where id = :id"), {"id": row}).scalar()
    assert type(stored) is str and stored == "held"


def test_every_status_is_runnable_terminal_or_in_between() -> None:
    assert not set(RUNNABLE) & set(TERMINAL)
    between = set(InboundStatus) - set(RUNNABLE) - set(TERMINAL)
    assert between == {InboundStatus.PROCESSING, InboundStatus.HELD}
    assert {m.target for m in INBOUND_MOVES.values()} == set(InboundStatus)
