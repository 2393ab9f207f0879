"""Threading's contracts with storage: what matching reads and decides, and what the lifecycle changes.

Frozen dataclasses only, below storage, so that storage's lookup can answer
with them and its recording can take them while the stage logic that makes
them (``postroom.threading``) stays above storage and imports none of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Destination = Literal["conversation", "new", "inbox"]


@dataclass(frozen=True)
class ConversationRef:
    """What matching needs to know about a stored conversation."""

    id: int
    contact_id: int | None
    status: str
    subject_key: str
    reference: str
    last_activity_at: datetime


@dataclass(frozen=True)
class SentMessage:
    """An outbound message a bounce address names."""

    outbound_id: int
    conversation_id: int | None
    message_id: str


@dataclass(frozen=True)
class ThreadMatch:
    """The decision: an existing conversation, a new one, or the unsorted inbox; ``via`` says why."""

    destination: Destination
    via: str
    conversation_id: int | None = None
    contact_id: int | None = None
    token_contact_id: int | None = None
    flags: tuple[str, ...] = ()
    matched: str | None = None
    suggestions: tuple[int, ...] = ()
    returned: SentMessage | None = None  # the outbound message a bounce address names
    follows: int | None = None  # a new conversation picking up an older one of the same contact and subject

    @property
    def is_reply(self) -> bool:
        return self.destination == "conversation"


@dataclass(frozen=True)
class Event:
    """A notification event to raise for the recorded message."""

    kind: str
    recipient_type: str
    recipient_id: int | None
    conversation_id: int | None
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class Lifecycle:
    """The conversation columns to change (none without a conversation) and the events to raise, in order."""

    changes: Mapping[str, Any] = field(default_factory=dict)
    events: tuple[Event, ...] = ()
    reopened: bool = False
    notified: bool = False
