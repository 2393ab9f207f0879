"""The storage stage of the pipeline: placing a matched message, recording it and applying its lifecycle.

The flow asks ``already_recorded``, then ``place`` (author and conversation),
runs the pure lifecycle step (threading/lifecycle.py) on what was placed and
hands its outcome to ``record``, all in the same transaction as the threading
decision and the inbound row's final status, so a retry either finds
everything done or nothing. Neighbours: the threading lookup in storage/threading_lookup.py,
bounces in storage/bounces.py, staff messages and reply headers in
storage/staff_messages.py, staff actions (move, status, assign, autoclose) in
storage/conversation_actions.py, views in storage/conversation_views.py.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, case, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from postroom import messageids as refs
from postroom import subjects, trust
from postroom.errors import PostroomError
from postroom.model import Attachment, ConversationUpdate, Forward, ParsedMessage, to_jsonable
from postroom.statuses import ConversationStatus
from postroom.storage import bounces, contacts, routing
from postroom.storage.db import core, expire_loaded
from postroom.storage.inbound import InboundRecord
from postroom.storage.tables import (
    Contact,
    Conversation,
    Message,
    NotificationEvent,
    ThreadRef,
)
from postroom.storage.threading_lookup import threading_policy
from postroom.threading_model import Lifecycle, ThreadMatch

MAX_THREAD_REFS = 12
_conversations = Conversation.__table__.c
_messages = Message.__table__.c
_tenant = bindparam("tenant_id")
# The message stored for this inbound row, else the one with its Message-ID (one statement, the row first).
_for_inbound = _messages.inbound_id == bindparam("inbound_id")
_with_message_id = (_messages.tenant_id == _tenant) & (_messages.message_id == bindparam("message_id"))
_STORED = (select(_messages.id, _messages.conversation_id, _messages.flags).where(or_(_for_inbound, _with_message_id))
           .order_by(case((_for_inbound, 0), else_=1)).limit(1))
_INSERT_EVENT = insert(NotificationEvent.__table__)
_INSERT_THREAD_REF = insert(ThreadRef.__table__)
_LOOP_COUNT = select(func.count()).select_from(Message.__table__).where(
    _messages.conversation_id == bindparam("conversation_id"), _messages.author_email == bindparam("sender"),
    _messages.direction == "in", _messages.created_at >= bindparam("since"))
# Inserts that return the new id, or nothing when a unique constraint (Message-ID, inbound row, conversation
# reference) already holds the row: no SAVEPOINT + RELEASE around them, no IntegrityError to recover from.
_DIALECTS = {"sqlite": sqlite, "postgresql": postgresql}
_INSERT_MESSAGE = {name: d.insert(Message.__table__).on_conflict_do_nothing().returning(_messages.id)
                   for name, d in _DIALECTS.items()}
_INSERT_CONVERSATION = {name: d.insert(Conversation.__table__).on_conflict_do_nothing().returning(_conversations.id)
                        for name, d in _DIALECTS.items()}


# --- recording an inbound message ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    """What the storage stage did with one inbound message."""

    message_id: int | None
    conversation_id: int | None
    destination: str
    created_conversation: bool = False
    duplicate: bool = False
    reopened: bool = False
    notified: bool = False
    loop: bool = False
    flags: tuple[str, ...] = ()

    @property
    def foreign(self) -> bool:
        """True when the sender is not a participant of the conversation the message was attached to."""
        return trust.FOREIGN in self.flags

    @property
    def blocked(self) -> bool:
        """True when the sender's address is blocked for the tenant: nothing is ever sent to it."""
        return trust.BLOCKED in self.flags

    @property
    def suppress_auto_reply(self) -> bool:
        """True when nothing automatic may answer this message (loop, automatic mail, duplicate, blocked sender)."""
        return self.loop or self.duplicate or any(f in self.flags for f in ("auto_reply", "bounce", trust.BLOCKED))


def _random_reference() -> str:
    return "".join(secrets.choice(subjects.REFERENCE_ALPHABET) for _ in range(subjects.REFERENCE_LENGTH))


def _attachment_rows(attachments: Sequence[Attachment]) -> list[dict]:
    return [{"filename": a.filename, "content_type": a.content_type, "size": a.size, "sha256": a.sha256,
             "inline": a.inline, "content_id": a.content_id, "flags": list(a.flags)} for a in attachments]


def add_event(session: Session, tenant_id: int, kind: str, recipient_type: str, recipient_id: int | None, *,
              conversation_id: int | None = None, message_id: int | None = None, **payload: Any) -> int:
    """Insert one notification event (a Core insert: events are written, never read back here); its id."""
    return core(session, _INSERT_EVENT, dict(
        tenant_id=tenant_id, kind=kind, recipient_type=recipient_type, recipient_id=recipient_id,
        conversation_id=conversation_id, message_id=message_id, payload=to_jsonable(payload),
    )).inserted_primary_key[0]


@dataclass
class _Thread:
    """The fields of the recorded message's conversation that ``record`` reads or changes.

    Read and written with Core statements (no ORM load or unit of work per message); ``changes`` go out in one
    UPDATE at the end.
    """

    id: int
    tenant_id: int
    reference: str
    status: str
    flags: list
    responsible_user_id: int | None
    responsible_team_id: int | None
    changes: dict[str, Any] = field(default_factory=dict)

    def set(self, **values: Any) -> None:
        for name, value in values.items():
            if hasattr(self, name):
                setattr(self, name, value)
        self.changes.update(values)


_THREAD_COLUMNS = (_conversations.id, _conversations.tenant_id, _conversations.reference, _conversations.status,
                   _conversations.flags, _conversations.responsible_user_id, _conversations.responsible_team_id)
# The conversation and, in the same statement, how many messages its sender sent it lately (the loop breaker).
# FOR UPDATE: two messages joining one conversation apply their status and flag changes one after the other,
# whatever race keys they share (the sender's own messages are counted under its key, taken before).
_THREAD = select(*_THREAD_COLUMNS, select(func.count()).select_from(Message.__table__).where(
    _messages.conversation_id == _conversations.id, _messages.author_email == bindparam("sender"),
    _messages.direction == "in", _messages.created_at >= bindparam("since")).scalar_subquery().label("recent"),
).where(_conversations.id == bindparam("id")).with_for_update(of=Conversation.__table__)
_UNIT_REF = select(Contact.__table__.c.unit_ref).where(Contact.__table__.c.id == bindparam("id"))
_UPDATE_CONVERSATION = update(Conversation.__table__).where(_conversations.id == bindparam("conversation_row"))


def _load_thread(session: Session, conversation_id: int | None, tenant_id: int, sender: str,
                 since: datetime) -> tuple[_Thread, int]:
    """The conversation, and the number of messages ``sender`` sent it since ``since``."""
    row = core(session, _THREAD, {"id": conversation_id, "sender": sender, "since": since}).first()
    if row is None or row.tenant_id != tenant_id:
        raise PostroomError(f"conversation {conversation_id} is not one of tenant {tenant_id}'s")
    return _Thread(row.id, row.tenant_id, row.reference, row.status, list(row.flags or []), row.responsible_user_id,
                   row.responsible_team_id), row.recent


def new_conversation_values(session: Session, tenant_id: int, *, subject: str, contact_id: int | None, now: datetime,
                follows: int | None = None) -> dict[str, Any]:
    """The columns of a new customer conversation, before the rules' decision and its reference."""
    unit_ref = core(session, _UNIT_REF, {"id": contact_id}).scalar() if contact_id is not None else None
    return dict(
        tenant_id=tenant_id, subject=(subjects.strip_prefixes(subject)[0] or subject)[:2000],
        subject_key=subjects.subject_key(subject), status=ConversationStatus.OPEN, contact_id=contact_id,
        unit_ref=unit_ref,
        tags=[], flags=[], created_at=now, updated_at=now, last_activity_at=now, last_customer_at=now,
        responsible_user_id=None, responsible_team_id=None, follows_id=follows,
    )


def create_conversation(session: Session, values: dict[str, Any]) -> int:
    """Insert a conversation (Core, see ``_Thread``) under a fresh random reference, set into ``values``; its id.

    The one way a conversation is created: by the storage stage for new mail and by staff moving a message.
    """
    insert_conversation = _INSERT_CONVERSATION[session.get_bind().dialect.name]
    for _ in range(20):
        values["reference"] = _random_reference()
        conversation_id = core(session, insert_conversation, values).scalar()
        if conversation_id is not None:  # None: the reference is taken
            return conversation_id
    raise PostroomError("could not create a conversation (reference collisions)")


def _new_thread(session: Session, tenant_id: int, *, subject: str, contact_id: int | None, now: datetime,
                change: ConversationUpdate | None, follows: int | None = None) -> _Thread:
    """A new customer conversation with the rules' decision applied."""
    values = new_conversation_values(session, tenant_id, subject=subject, contact_id=contact_id, now=now,
                                     follows=follows)
    if change is not None:
        values.update(routing.decided_values(session, tenant_id, values, change))
    conversation_id = create_conversation(session, values)
    return _Thread(conversation_id, tenant_id, values["reference"], values["status"], list(values["flags"]),
                   values["responsible_user_id"], values["responsible_team_id"])


def _save_thread(session: Session, thread: _Thread) -> None:
    """Write ``thread.changes``; a copy of the conversation already loaded in the session is refreshed."""
    if not thread.changes:
        return
    core(session, _UPDATE_CONVERSATION, {"conversation_row": thread.id, **thread.changes})
    expire_loaded(session, Conversation, thread.id)


def _existing(session: Session, tenant_id: int, inbound_id: int, message_id: str | None) -> Any:
    """The stored message (``id``, ``conversation_id``, ``flags``) of this inbound row, else of its Message-ID."""
    return core(session, _STORED, {"inbound_id": inbound_id, "tenant_id": tenant_id, "message_id": message_id}).first()


def _loop_count(session: Session, conversation_id: int, sender: str, since: datetime) -> int:
    return core(session, _LOOP_COUNT, {"conversation_id": conversation_id, "sender": sender,
                                       "since": since}).scalar() or 0


def _add_thread_refs(session: Session, tenant_id: int, message_row: int, ids: Sequence[str]) -> None:
    rows = [{"tenant_id": tenant_id, "ref": ref, "message_id": message_row}
            for ref in list(dict.fromkeys(ids))[:MAX_THREAD_REFS]]
    if rows:
        core(session, _INSERT_THREAD_REF, rows)


def _duplicate(row: Any) -> Recorded:
    """The message this inbound row or Message-ID already stored (``id``, ``conversation_id``, ``flags``)."""
    return Recorded(row.id, row.conversation_id, "conversation" if row.conversation_id else "inbox", duplicate=True,
                    flags=tuple(row.flags or ()))


def _author(session: Session, tenant_id: int, sender: str, sender_name: str, forward: Forward | None,
            automatic: bool, sender_contact: int | None,
            known: Mapping[str, contacts.KnownContact]) -> tuple[int | None, list[dict] | None]:
    """Who wrote the message (a staff forward: the original's sender, if known) and, for a contact created now
    with a name, the existing contacts it may duplicate. Automatic mail creates no contact: its author is the
    sender's contact as threading read it (``sender_contact``, under the sender's lock); ``known`` holds the
    contacts threading read, by address, which are not read again."""
    if forward is not None:
        address = contacts.normalize_address(forward.sender.address) if forward.sender else ""
        if not address:  # no contact has an empty address (``ensure_contact`` refuses one)
            return None, None
        if address in known:
            return known[address].contact_id, None
        return contacts.contact_for_address(session, tenant_id, address), None
    if not sender:
        return None, None
    if automatic:
        return sender_contact, None
    author, created = contacts.ensure_contact_created(session, tenant_id, sender, sender_name,
                                                      known=known.get(contacts.normalize_address(sender)))
    similar = (contacts.similar_contacts(session, tenant_id, author, sender_name) or None) if created and sender_name \
        else None
    return author, similar


def _thread_for(session: Session, match: ThreadMatch, tenant_id: int, *, subject: str, author: int | None,
                change: ConversationUpdate | None, sender: str, now: datetime) -> tuple[_Thread | None, bool, bool]:
    """The conversation the message goes to (created when the match says new), whether created, whether a loop."""
    if match.destination == "new":
        return _new_thread(session, tenant_id, subject=subject, contact_id=author, now=now, change=change,
                           follows=match.follows), True, False
    if match.destination != "conversation":
        return None, False, False
    policy = threading_policy(session, tenant_id)
    conv, recent = _load_thread(session, match.conversation_id, tenant_id, sender, now - policy.loop_window)
    return conv, False, bool(sender) and recent >= policy.loop_max


@dataclass(frozen=True)
class Placed:
    """Where a new inbound message goes, decided before it is stored: what the lifecycle reads and ``record`` writes.

    ``thread`` is the conversation it joins or starts (None: the unsorted inbox); ``forward`` the staff forward
    it is stored as; ``flags`` include ``loop`` when its sender is over the loop limit in that conversation.
    """

    inbound: InboundRecord
    parsed: ParsedMessage
    match: ThreadMatch
    thread: _Thread | None
    created: bool
    loop: bool
    automatic: bool
    flags: tuple[str, ...]
    sender: str
    author: int | None
    similar: list[dict] | None
    forward: Forward | None
    message_id: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    now: datetime


def _canonical_id(parsed: ParsedMessage) -> str | None:
    return refs.canonical(parsed.message_id) if parsed.message_id else None


def _sender(parsed: ParsedMessage) -> str:
    return parsed.sender.address.lower() if parsed.sender else ""


def _automatic_flags(parsed: ParsedMessage) -> list[str]:
    return [*(["auto_reply"] if parsed.auto_reply is not None else []),
            *(["bounce"] if parsed.bounce is not None else [])]


def already_recorded(session: Session, inbound: InboundRecord, parsed: ParsedMessage) -> Recorded | None:
    """The message this inbound row (else its Message-ID) already stored, as a duplicate; None for a new one."""
    existing = _existing(session, inbound.tenant_id, inbound.id, _canonical_id(parsed))
    return _duplicate(existing) if existing is not None else None


def place(session: Session, inbound: InboundRecord, parsed: ParsedMessage, match: ThreadMatch,
          change: ConversationUpdate | None = None, *, now: datetime | None = None,
          known: Mapping[str, contacts.KnownContact] | None = None) -> Placed:
    """The author (a contact, created when new) and the conversation (created when the match says new) of a
    message ``already_recorded`` did not find.

    ``change`` is the rules' decision for a conversation this message starts (``routing.new_conversation_update``);
    ``known`` the contacts threading read in this transaction (``SqlLookup.contacts_read``).
    """
    now = now or datetime.now(UTC)
    tenant_id, sender = inbound.tenant_id, _sender(parsed)
    automatic = parsed.auto_reply is not None or parsed.bounce is not None or "bounce" in match.flags
    forward = parsed.forward if match.via == "forward" else None
    author, similar = _author(session, tenant_id, sender, parsed.sender.name if parsed.sender else "", forward,
                              automatic, match.contact_id, known or {})
    thread, created, loop = _thread_for(session, match, tenant_id, subject=parsed.subject, author=author,
                                        change=change, sender=sender, now=now)
    flags = (*match.flags, *_automatic_flags(parsed), *(["loop"] if loop else []))
    in_reply_to, references = refs.replied_to(parsed)
    return Placed(inbound, parsed, match, thread, created, loop, automatic, flags, sender, author, similar, forward,
                  _canonical_id(parsed), in_reply_to, references, now)


def _author_columns(parsed: ParsedMessage, forward: Forward | None) -> dict[str, Any]:
    """Who wrote it: a staff forward is stored as written by the original's sender."""
    if forward is not None and forward.sender is not None:
        return {"author_name": forward.sender.name[:200], "author_email": forward.sender.address[:320]}
    return {"author_name": (parsed.sender.name if parsed.sender else "")[:200], "author_email": _sender(parsed)[:320]}


def _content_columns(parsed: ParsedMessage, forward: Forward | None) -> dict[str, Any]:
    """What it says: a staff forward's subject, date, text and attachments are the original's, where it has them."""
    if forward is None:
        return {"subject": parsed.subject or "", "sent_at": parsed.date, "reply_text": parsed.reply_text or parsed.text,
                "attachments": _attachment_rows(parsed.attachments)}
    return {"subject": forward.subject or parsed.subject or "", "sent_at": forward.date or parsed.date,
            "reply_text": forward.text, "attachments": _attachment_rows(forward.attachments or parsed.attachments)}


def _message_values(placed: Placed) -> dict[str, Any]:
    """The ``messages`` row of an inbound message; a staff forward is stored as the original it carries."""
    parsed, match, forward = placed.parsed, placed.match, placed.forward
    return dict(
        tenant_id=placed.inbound.tenant_id, conversation_id=placed.thread.id if placed.thread else None,
        direction="in", kind="email", author_contact_id=placed.author, **_author_columns(parsed, forward),
        **_content_columns(parsed, forward), created_at=placed.now, text=parsed.text, html=parsed.html,
        quoted_text=parsed.quoted_text, signature=parsed.signature, message_id=placed.message_id,
        in_reply_to=list(placed.in_reply_to), references=list(placed.references), inbound_id=placed.inbound.id,
        flags=sorted(set(placed.flags)), matched_via=match.via, forward=to_jsonable(forward) if forward else None,
        forwarded_by=placed.sender if forward else None, suggestions=list(match.suggestions),
        similar_contacts=placed.similar,
    )


def _record_bounce(session: Session, tenant_id: int, parsed: ParsedMessage, match: ThreadMatch,
                   message_row: int) -> None:
    """A bounce that names the message it returns (and is not one of our VERP-matched ones) is kept against it."""
    original = parsed.bounce.original_message_id if parsed.bounce is not None else None
    bounced = refs.canonical(original) if original else None
    if bounced is not None and match.returned is None:
        bounces.record_bounce(session, tenant_id, bounced, permanent=parsed.bounce.permanent,
                              temporary=parsed.bounce.temporary, status=parsed.bounce.status,
                              bounce_message_row=message_row)


def record(session: Session, placed: Placed, outcome: Lifecycle) -> Recorded:
    """Store a placed message and apply its lifecycle (``outcome``: what ``threading.lifecycle.step`` returned).

    Idempotent per inbound row and Message-ID: when a concurrent worker stored the same Message-ID first, the
    message is that one's duplicate and ``outcome`` is not applied.
    """
    inbound, tenant_id, conv = placed.inbound, placed.inbound.tenant_id, placed.thread
    message_row: int | None = core(session, _INSERT_MESSAGE[session.get_bind().dialect.name],
                                   _message_values(placed)).scalar()
    if message_row is None:  # the same Message-ID was stored by a concurrent worker: one message
        found = _existing(session, tenant_id, inbound.id, placed.message_id)
        if found is None:
            raise PostroomError(f"inbound {inbound.id}: its message was neither stored nor found")
        return _duplicate(found)
    _add_thread_refs(session, tenant_id, message_row, [*placed.in_reply_to, *reversed(placed.references)])
    for event in outcome.events:
        add_event(session, tenant_id, event.kind, event.recipient_type, event.recipient_id,
                  conversation_id=event.conversation_id, message_id=message_row, **event.payload)
    if conv is not None:
        conv.set(**outcome.changes)
        _save_thread(session, conv)
    _record_bounce(session, tenant_id, placed.parsed, placed.match, message_row)
    session.flush()
    return Recorded(message_row, conv.id if conv else None, "conversation" if conv else "inbox",
                    created_conversation=placed.created, reopened=outcome.reopened, notified=outcome.notified,
                    loop=placed.loop, flags=tuple(sorted(set(placed.flags))))


def loop_suppressed(session: Session, conversation_id: int, sender: str, *, now: datetime | None = None) -> bool:
    """True while ``sender`` is over the loop limit in this conversation: send it nothing automatic."""
    conv = session.get(Conversation, conversation_id)
    if conv is None:
        return False
    policy = threading_policy(session, conv.tenant_id)
    since = (now or datetime.now(UTC)) - policy.loop_window
    return _loop_count(session, conversation_id, sender.lower(), since) > policy.loop_max
