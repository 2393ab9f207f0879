"""The conversation lifecycle of one recorded customer message, as a pure step: what to write, whom to tell.

Storage loads the conversation and applies the returned changes and events in
the pipeline's transaction; the rules of the lifecycle (a loop is flagged
once, a customer's own message reopens a closed or waiting conversation, a
stranger's never moves the status, automatic mail tells nobody, a blocked
sender's inbox mail waits silently) live here, testable without a database.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from postroom import trust
from postroom.statuses import CONVERSATION_MOVES, ConversationStatus
from postroom.threading_model import Event, Lifecycle


class Thread(Protocol):
    """The conversation as the lifecycle reads it."""

    id: int
    tenant_id: int
    reference: str
    status: str
    flags: list
    responsible_user_id: int | None
    responsible_team_id: int | None


def responsible(conv: Thread) -> tuple[str, int | None]:
    """Who hears of the conversation: the responsible user, else the team, else the tenant (unassigned)."""
    if conv.responsible_user_id is not None:
        return "user", conv.responsible_user_id
    if conv.responsible_team_id is not None:
        return "team", conv.responsible_team_id
    return "tenant", conv.tenant_id


def step(conv: Thread | None, *, tenant_id: int, flags: Sequence[str], automatic: bool, loop: bool, created: bool,
         sender: str, via: str, now: datetime) -> Lifecycle:
    """What recording one inbound message does to its conversation (or, without one, to the tenant's inbox)."""
    if conv is None:
        if automatic or trust.BLOCKED in flags:  # a blocked sender's mail waits silently
            return Lifecycle()
        return Lifecycle(events=(Event("inbox_message", "tenant", tenant_id, None, {"via": via}),), notified=True)
    changes: dict[str, Any] = {}
    events: list[Event] = []
    if loop and "loop" not in conv.flags:
        changes["flags"] = sorted({*conv.flags, "loop"})
        events.append(Event("loop_detected", "operator", None, conv.id, {"sender": sender,
                                                                         "reference": conv.reference}))
    reopened = notified = False
    if not automatic and not loop:
        foreign = trust.FOREIGN in flags
        if not foreign:  # a stranger's message is shown to staff, but never reopens or moves the status
            if conv.status in CONVERSATION_MOVES["reopen"].allowed_from:
                reopened = conv.status == ConversationStatus.CLOSED
                changes["status"] = ConversationStatus.OPEN
                if reopened:
                    changes["closed_at"] = None
            changes["last_customer_at"] = now
        changes["last_activity_at"] = now
        kind = "new_conversation" if created else "customer_message"
        events.append(Event(kind, *responsible(conv), conv.id, {"reference": conv.reference, "reopened": reopened,
                                                               "foreign_sender": foreign}))
        notified = True
    changes["updated_at"] = now
    return Lifecycle(changes, tuple(events), reopened, notified)
