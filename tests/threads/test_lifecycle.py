"""The conversation lifecycle as a pure step: what one recorded message changes and whom it tells."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from postroom import trust
from postroom.threading import lifecycle
from postroom.threading_model import Lifecycle

NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)


@dataclass
class Conv:
    status: str = "open"
    flags: list = field(default_factory=list)
    responsible_user_id: int | None = None
    responsible_team_id: int | None = None
    id: int = 7
    tenant_id: int = 1
    reference: str = "ABC123"


def step(conv: Conv | None, *, flags: tuple[str, ...] = (), automatic: bool = False, loop: bool = False,
         created: bool = False) -> Lifecycle:
    return lifecycle.step(conv, tenant_id=1, flags=flags, automatic=automatic, loop=loop, created=created,
                          sender="jean@example.com", via="token", now=NOW)


def test_a_customer_reply_reopens_a_closed_conversation_and_tells_the_responsible_user() -> None:
    out = step(Conv(status="closed", responsible_user_id=4, responsible_team_id=2))
    assert out.changes == {"status": "open", "closed_at": None, "last_customer_at": NOW, "last_activity_at": NOW,
                           "updated_at": NOW}
    assert [(e.kind, e.recipient_type, e.recipient_id) for e in out.events] == [("customer_message", "user", 4)]
    assert out.events[0].payload == {"reference": "ABC123", "reopened": True, "foreign_sender": False}
    assert out.reopened and out.notified


def test_awaiting_feedback_opens_without_counting_as_reopened() -> None:
    out = step(Conv(status="awaiting_feedback", responsible_team_id=2))
    assert out.changes["status"] == "open" and "closed_at" not in out.changes and not out.reopened
    assert (out.events[0].recipient_type, out.events[0].recipient_id) == ("team", 2)


def test_a_strangers_message_moves_no_status_but_is_shown() -> None:
    out = step(Conv(status="closed"), flags=(trust.FOREIGN,), created=True)
    assert out.changes == {"last_activity_at": NOW, "updated_at": NOW}
    assert [(e.kind, e.recipient_type, e.payload["foreign_sender"]) for e in out.events] == \
        [("new_conversation", "tenant", True)]


def test_a_loop_is_flagged_once_and_tells_only_the_operator() -> None:
    first = step(Conv(), loop=True)
    assert first.changes == {"flags": ["loop"], "updated_at": NOW} and not first.notified
    assert [(e.kind, e.recipient_type) for e in first.events] == [("loop_detected", "operator")]
    assert step(Conv(flags=["loop"]), loop=True).events == ()


def test_automatic_mail_only_touches_the_conversation() -> None:
    out = step(Conv(status="closed"), automatic=True)
    assert out.changes == {"updated_at": NOW} and out.events == () and not out.notified


def test_inbox_mail_tells_the_tenant_unless_automatic_or_blocked() -> None:
    assert [(e.kind, e.recipient_type, e.recipient_id, e.conversation_id) for e in step(None).events] == \
        [("inbox_message", "tenant", 1, None)]
    assert step(None, flags=(trust.BLOCKED,)) == Lifecycle()
    assert step(None, automatic=True) == Lifecycle()
