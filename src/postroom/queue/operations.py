"""Operator actions on inbound rows, shared by ``postroom queue`` and the web console.

One table (statuses.INBOUND_MOVES) says which states each action may start from, so the CLI and the
console cannot drift apart; a retry hands the id back to the broker when a
dispatcher is at hand (otherwise the workers' recovery sweep picks it up).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from postroom.app import App
from postroom.statuses import INBOUND_MOVES, InboundStatus, Move
from postroom.storage import inbound
from postroom.storage.inbound import InboundRecord

#: The operator's moves of the one inbound transitions table (statuses.INBOUND_MOVES), by action name.
OPERATIONS: dict[str, Move] = {name: move for name, move in INBOUND_MOVES.items() if move.by == "operator"}
RETRYABLE = OPERATIONS["retry"].allowed_from

Dispatch = Callable[[Iterable[int]], None]


def apply(app: App, inbound_id: int, action: str, dispatch: Dispatch | None = None) -> InboundRecord:
    """Run one action (raises NotFound / PostroomError); re-dispatch rows that became pending."""
    operation = OPERATIONS[action]
    with app.session() as session:
        record = inbound.set_status(session, inbound_id, operation.target, allowed_from=operation.allowed_from)
    if record.status == InboundStatus.PENDING and dispatch is not None:
        dispatch([record.id])
    return record
