"""Operator actions on inbound rows, shared by ``postroom queue`` and the web console.

One table says which states each action may start from, so the CLI and the
console cannot drift apart; a retry hands the id back to the broker when a
dispatcher is at hand (otherwise the workers' recovery sweep picks it up).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from postroom.app import App
from postroom.storage import inbound
from postroom.storage.inbound import InboundRecord

RETRYABLE = ("failed", "parse_failed", "retrying", "held", "discarded", "rejected")


@dataclass(frozen=True)
class Operation:
    target: str
    allowed_from: tuple[str, ...]
    doc: str


OPERATIONS: dict[str, Operation] = {
    "retry": Operation("pending", RETRYABLE, "Put a message back to pending; the workers pick it up."),
    "drop": Operation("dropped", ("failed", "parse_failed", "retrying", "held", "pending"),
                      "Give up on a message for good (it stays stored)."),
    "hold": Operation("held", ("pending", "retrying", "failed"), "Keep a message from being processed until released."),
    "release": Operation("pending", ("held",), "Let a held message be processed again."),
}

Dispatch = Callable[[Iterable[int]], None]


def apply(app: App, inbound_id: int, action: str, dispatch: Dispatch | None = None) -> InboundRecord:
    """Run one action (raises NotFound / PostroomError); re-dispatch rows that became pending."""
    operation = OPERATIONS[action]
    with app.session() as session:
        record = inbound.set_status(session, inbound_id, operation.target, allowed_from=operation.allowed_from)
    if record.status == "pending" and dispatch is not None:
        dispatch([record.id])
    return record
