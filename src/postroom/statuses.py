"""Named outcomes: the statuses of an inbound row and of a conversation, and the one table of moves for each.

StrEnums, so a status is stored, compared and written to JSON as the same
plain string as before. The pipeline, the queue operations, the CLI, the API
and the console all read these tables instead of spelling statuses out.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class InboundStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    RETRYING = "retrying"
    DONE = "done"
    FAILED = "failed"
    PARSE_FAILED = "parse_failed"
    REJECTED = "rejected"
    DISCARDED = "discarded"
    HELD = "held"
    DROPPED = "dropped"


class ConversationStatus(StrEnum):
    OPEN = "open"
    AWAITING_FEEDBACK = "awaiting_feedback"
    IN_PROGRESS = "in_progress"
    CLOSED = "closed"


@dataclass(frozen=True)
class Move:
    """One named move: the status it leads to, the statuses it may start from, who makes it."""

    target: str
    allowed_from: tuple[str, ...]
    by: Literal["pipeline", "operator", "customer", "sweeper", "staff"]
    doc: str


_I = InboundStatus
_RETRYABLE = (_I.FAILED, _I.PARSE_FAILED, _I.RETRYING, _I.HELD, _I.DISCARDED, _I.REJECTED)

INBOUND_MOVES: dict[str, Move] = {
    "claim": Move(_I.PROCESSING, (_I.PENDING, _I.RETRYING, _I.PROCESSING), "pipeline",
                  "A worker takes the row; a processing row only once its lease ran out."),
    "done": Move(_I.DONE, (_I.PROCESSING,), "pipeline", "Recorded (and acted on)."),
    "parse_failed": Move(_I.PARSE_FAILED, (_I.PROCESSING,), "pipeline", "The raw mail cannot be parsed; kept."),
    "rejected": Move(_I.REJECTED, (_I.PROCESSING,), "pipeline", "A rule rejected it after DATA (no bounce)."),
    "discarded": Move(_I.DISCARDED, (_I.PROCESSING,), "pipeline", "A rule discarded it; kept for operators."),
    "retrying": Move(_I.RETRYING, (_I.PROCESSING,), "pipeline", "An attempt failed; another comes."),
    "failed": Move(_I.FAILED, (_I.PROCESSING,), "pipeline", "The last attempt failed or the budget ran out."),
    "retry": Move(_I.PENDING, _RETRYABLE, "operator", "Put a message back to pending; the workers pick it up."),
    "drop": Move(_I.DROPPED, (_I.FAILED, _I.PARSE_FAILED, _I.RETRYING, _I.HELD, _I.PENDING), "operator",
                 "Give up on a message for good (it stays stored)."),
    "hold": Move(_I.HELD, (_I.PENDING, _I.RETRYING, _I.FAILED), "operator",
                 "Keep a message from being processed until released."),
    "release": Move(_I.PENDING, (_I.HELD,), "operator", "Let a held message be processed again."),
}

#: Rows a worker may take, rows nothing moves on its own, and rows the console lists as problems.
RUNNABLE = (_I.PENDING, _I.RETRYING)
TERMINAL = (_I.DONE, _I.FAILED, _I.PARSE_FAILED, _I.REJECTED, _I.DISCARDED, _I.DROPPED)
PROBLEMS = (_I.FAILED, _I.PARSE_FAILED, _I.RETRYING, _I.HELD)

_C = ConversationStatus
CONVERSATION_STATUSES: tuple[str, ...] = tuple(status.value for status in _C)

CONVERSATION_MOVES: dict[str, Move] = {
    "reopen": Move(_C.OPEN, (_C.CLOSED, _C.AWAITING_FEEDBACK), "customer",
                   "A customer's own message (not automatic, not a loop, not a stranger's) reopens the conversation."),
    "autoclose": Move(_C.CLOSED, (_C.OPEN, _C.AWAITING_FEEDBACK, _C.IN_PROGRESS), "sweeper",
                      "Closed after the tenant's autoclose_days without activity."),
    "set": Move("any", CONVERSATION_STATUSES, "staff", "Staff, the API and rules may set any status."),
}
