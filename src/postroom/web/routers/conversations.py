"""Tenant API over conversations and the unsorted inbox; every row is checked against the key's tenant.

A row of another tenant is answered exactly like a missing one (404), so ids
reveal nothing across tenants.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field, model_validator
from sqlalchemy.orm import Session

from postroom.app import App
from postroom.errors import NotFound, PostroomError
from postroom.exports import Period, collect
from postroom.exports.mbox import to_mbox
from postroom.exports.pdf import to_pdf
from postroom.outbound import actions
from postroom.outbound.compose import Dispatch
from postroom.statuses import ConversationStatus
from postroom.storage import (
    conversation_actions,
    conversation_edits,
    conversation_search,
    conversation_views,
    inbound,
    mentions,
    staff,
)
from postroom.storage.apikeys import Principal
from postroom.storage.conversation_search import ConversationFilter
from postroom.storage.conversation_views import ConversationSummary, MessageView
from postroom.web.auth import tenant_principal
from postroom.web.deps import RowId, db_session, get_app, get_outbound_dispatch
from postroom.web.errors import ERROR_RESPONSES

router = APIRouter(prefix="/api/v1", tags=["conversations"], responses=ERROR_RESPONSES)

SAFE_FILENAME = re.compile(r"[^A-Za-z0-9._ -]+")


class MessageOut(BaseModel):
    id: int
    conversation_id: int | None
    direction: str
    kind: str
    internal: bool
    author_name: str
    author_email: str
    subject: str
    sent_at: datetime | None
    created_at: datetime
    message_id: str | None
    reply_text: str
    text: str
    is_read: bool
    is_answered: bool
    attachments: list[dict]
    flags: list[str] = Field(default_factory=list, description="e.g. blocked, foreign_sender, bounce")
    similar_contacts: list[dict] = Field(
        default_factory=list, description="The sender's address was new but other contacts have its display name: "
                                          "[{contact_id, address}] (a hint to merge, never proof)")

    @classmethod
    def of(cls, view: MessageView) -> MessageOut:
        fields = {name: getattr(view, name) for name in cls.model_fields if name != "internal"}
        return cls(**fields, internal=view.kind == "note")


class ConversationOut(BaseModel):
    id: int
    reference: str
    subject: str
    status: str
    category: str | None
    contact_email: str | None
    contact_name: str
    responsible_user_id: int | None
    responsible_team_id: int | None
    unit_ref: str | None
    tags: list[str]
    created_at: datetime
    last_activity_at: datetime
    message_count: int
    follows_id: int | None = Field(default=None, description="The older conversation of the same contact and "
                                   "subject this one picked up again (a reply past the subject window)")

    @classmethod
    def of(cls, summary: ConversationSummary) -> ConversationOut:
        return cls(**{name: getattr(summary, name) for name in cls.model_fields})


class ConversationDetail(ConversationOut):
    messages: list[MessageOut]


class ConversationPage(BaseModel):
    total: int = Field(description="Conversations matching the filters, over all pages")
    offset: int
    limit: int
    items: list[ConversationOut]


class ConversationChange(BaseModel):
    """Only the fields sent are changed; ``responsible_user_id: null`` un-assigns, ``category: null`` clears."""

    status: ConversationStatus | None = None
    category: str | None = Field(default=None, max_length=100)
    subject: str | None = Field(default=None, min_length=1, max_length=2000)
    responsible_user_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    responsible_team_id: int | None = Field(default=None, ge=1, le=2**31 - 1)

    def changes(self) -> dict[str, object]:
        """The fields sent, as storage changes (a ``status``/``subject`` of null means: leave as is)."""
        fields = set(ConversationChange.model_fields) & self.model_fields_set
        return {name: getattr(self, name) for name in fields
                if getattr(self, name) is not None or name not in ("status", "subject")}


class BulkChange(ConversationChange):
    ids: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] = Field(min_length=1, max_length=500,
                                                                 description="Conversations to change")


class Updated(BaseModel):
    updated: list[int]


class ReadIn(BaseModel):
    read: bool = True


class MarkedRead(BaseModel):
    changed: int = Field(description="Messages whose read flag changed")


class NoteIn(BaseModel):
    user_id: int = Field(ge=1, le=2**31 - 1, description="The staff user writing the note")
    text: str = Field(min_length=1, max_length=100_000)


class NoteOut(MessageOut):
    mentioned_user_ids: list[int] = Field(description="Staff users the note @mentions (each got a mention event)")


class MoveIn(BaseModel):
    conversation_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    new: bool = False
    force: bool = Field(default=False, description="Confirm moving a customer's message into another contact's "
                                                   "conversation")

    @model_validator(mode="after")
    def one_target(self) -> MoveIn:
        if self.new == (self.conversation_id is not None):
            raise ValueError("give either conversation_id or new: true")
        return self


class Moved(BaseModel):
    message_id: int
    from_conversation_id: int | None
    to_conversation_id: int
    created_conversation: bool
    notice_outbound_id: int | None = Field(default=None, description="The notice queued for the customer")
    emptied: bool = Field(default=False, description="The conversation it left is empty: closed, emptied_by_move")


def own_conversation(session: Session, principal: Principal,
                     conversation_id: int) -> tuple[ConversationSummary, list[MessageView]]:
    try:
        summary, messages = conversation_views.get_conversation(session, conversation_id)
    except NotFound:
        summary, messages = None, []
    if summary is None or summary.tenant_id != principal.tenant_id:
        raise NotFound(f"no conversation {conversation_id}")
    return summary, messages


def own_message(session: Session, principal: Principal, message_id: int) -> MessageView:
    """A message belongs to the tenant of its conversation, or (unsorted) of the inbound row it came from."""
    try:
        view = conversation_views.get_message(session, message_id)
        if view.conversation_id is not None:
            tenant_id = conversation_views.get_conversation(session, view.conversation_id)[0].tenant_id
        elif view.inbound_id is not None:
            tenant_id = inbound.get_inbound(session, view.inbound_id).tenant_id
        else:
            tenant_id = None
    except NotFound:
        tenant_id = None
    if tenant_id != principal.tenant_id:
        raise NotFound(f"no message {message_id}")
    return view


def detail(session: Session, principal: Principal, conversation_id: int) -> ConversationDetail:
    summary, messages = own_conversation(session, principal, conversation_id)
    return ConversationDetail(**ConversationOut.of(summary).model_dump(), messages=[MessageOut.of(m) for m in messages])


@router.get("/conversations", response_model=ConversationPage)
def list_conversations(
        principal: Principal = Depends(tenant_principal), session: Session = Depends(db_session),
        status: ConversationStatus | None = None,
        category: Annotated[str | None, Query(max_length=100)] = None,
        responsible_user_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
        responsible_team_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
        unassigned: Annotated[bool | None, Query(description="true: nobody responsible; false: someone")] = None,
        unread: Annotated[bool | None, Query(description="true: has an unread customer message")] = None,
        unanswered: Annotated[bool | None, Query(description="true: the customer wrote after the last reply")] = None,
        contact: Annotated[str | None, Query(max_length=320, description="The contact's e-mail address")] = None,
        unit: Annotated[str | None, Query(max_length=200, description="Unit or project reference")] = None,
        q: Annotated[str | None, Query(max_length=200, description="Text in the subject or any message")] = None,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 50) -> ConversationPage:
    """The tenant's conversations matching every filter given, most recently active first, with the total."""
    found = conversation_search.search(session, principal.tenant_id, ConversationFilter(
        status=status, category=category, responsible_user_id=responsible_user_id,
        responsible_team_id=responsible_team_id, unassigned=unassigned, unread=unread, unanswered=unanswered,
        contact_email=contact, unit_ref=unit, text=q), offset=offset, limit=limit)
    return ConversationPage(total=found.total, offset=found.offset, limit=found.limit,
                            items=[ConversationOut.of(c) for c in found.items])


@router.post("/conversations/bulk", response_model=Updated)
def bulk_change(change: BulkChange, principal: Principal = Depends(tenant_principal),
                session: Session = Depends(db_session)) -> Updated:
    """The same status, category, subject or responsible change on many conversations: all of them or none."""
    changes = change.changes()
    if not changes:
        raise PostroomError("nothing to change: send status, category, subject or a responsible user/team")
    return Updated(updated=conversation_edits.update_conversations(session, principal.tenant_id, change.ids,
                                                                   **changes))


@router.get("/conversations/{conversation_id}", response_model=ConversationDetail)
def show_conversation(conversation_id: RowId, principal: Principal = Depends(tenant_principal),
                      session: Session = Depends(db_session)) -> ConversationDetail:
    """One conversation with its messages in order; internal notes have ``internal: true``."""
    return detail(session, principal, conversation_id)


@router.patch("/conversations/{conversation_id}", response_model=ConversationDetail)
def change_conversation(conversation_id: RowId, change: ConversationChange,
                        principal: Principal = Depends(tenant_principal),
                        session: Session = Depends(db_session)) -> ConversationDetail:
    """Change status, category, subject and/or the responsible user or team."""
    own_conversation(session, principal, conversation_id)
    conversation_edits.update_conversations(session, principal.tenant_id, [conversation_id], **change.changes())
    return detail(session, principal, conversation_id)


@router.post("/conversations/{conversation_id}/read", response_model=MarkedRead)
def mark_conversation_read(conversation_id: RowId, mark: ReadIn, principal: Principal = Depends(tenant_principal),
                           session: Session = Depends(db_session)) -> MarkedRead:
    """Mark all messages of the conversation read (``{"read": false}``: unread)."""
    own_conversation(session, principal, conversation_id)
    return MarkedRead(changed=conversation_edits.mark_conversation_read(session, conversation_id, mark.read))


def _user_tenant(session: Session, user_id: int) -> int | None:
    try:
        return staff.get_user(session, user_id).tenant_id
    except NotFound:
        return None


@router.post("/conversations/{conversation_id}/notes", response_model=NoteOut, status_code=201)
def add_note(conversation_id: RowId, note: NoteIn, principal: Principal = Depends(tenant_principal),
             session: Session = Depends(db_session)) -> NoteOut:
    """Add an internal note (never mailed to the customer); staff it @mentions get a ``mention`` event."""
    own_conversation(session, principal, conversation_id)
    if _user_tenant(session, note.user_id) != principal.tenant_id:
        raise PostroomError(f"no staff user {note.user_id} in this tenant")
    row, mentioned = mentions.add_note(session, principal.tenant_id, conversation_id, note.user_id, note.text)
    return NoteOut(**MessageOut.of(conversation_views.get_message(session, row)).model_dump(),
                   mentioned_user_ids=mentioned)


@router.get("/inbox", response_model=list[MessageOut])
def list_inbox(principal: Principal = Depends(tenant_principal), session: Session = Depends(db_session),
               limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[MessageOut]:
    """The unsorted inbox: messages no conversation claimed, newest first."""
    return [MessageOut.of(m) for m in conversation_views.list_inbox(session, principal.tenant, limit=limit)]


@router.get("/messages/{message_id}", response_model=MessageOut)
def show_message(message_id: RowId, principal: Principal = Depends(tenant_principal),
                 session: Session = Depends(db_session)) -> MessageOut:
    return MessageOut.of(own_message(session, principal, message_id))


@router.post("/messages/{message_id}/read", response_model=MessageOut)
def mark_message_read(message_id: RowId, mark: ReadIn, principal: Principal = Depends(tenant_principal),
                      session: Session = Depends(db_session)) -> MessageOut:
    """Mark one message read (``{"read": false}``: unread)."""
    own_message(session, principal, message_id)
    conversation_actions.mark_read(session, message_id, mark.read)
    return MessageOut.of(conversation_views.get_message(session, message_id))


@router.post("/messages/{message_id}/move", response_model=Moved)
def move_message(message_id: RowId, move: MoveIn, principal: Principal = Depends(tenant_principal),
                 session: Session = Depends(db_session), app: App = Depends(get_app),
                 dispatch: Dispatch | None = Depends(get_outbound_dispatch)) -> Moved:
    """Move a message (unsorted or misfiled) into a conversation of the tenant, or into a new one.

    Into another contact's conversation only with ``force``; the customer is
    told (``move_notice``) when moved between their own conversations.
    """
    own_message(session, principal, message_id)
    if move.conversation_id is not None:
        own_conversation(session, principal, move.conversation_id)
    session.commit()  # the move runs in its own transaction: end this one first (SQLite holds the write lock)
    done = actions.move(app, message_id, to_conversation_id=move.conversation_id, new=move.new, force=move.force,
                        dispatch=dispatch)
    moved = done.moved
    return Moved(message_id=moved.message_id, from_conversation_id=moved.from_conversation_id,
                 to_conversation_id=moved.to_conversation_id, created_conversation=moved.created_conversation,
                 notice_outbound_id=done.notice.id if done.notice else None, emptied=moved.emptied)


def content_disposition(filename: str) -> str:
    """An ASCII fallback name plus RFC 5987 UTF-8 name: no quotes, slashes or CR/LF can break out."""
    fallback = SAFE_FILENAME.sub("_", filename).strip(" .") or "attachment"
    return f"attachment; filename=\"{fallback[:150]}\"; filename*=UTF-8''{quote(filename[:255], safe='')}"


@router.get("/messages/{message_id}/attachments/{index}", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}, "description": "The attachment"}})
def download_attachment(message_id: RowId, index: Annotated[int, Path(ge=0, le=10_000)],
                        principal: Principal = Depends(tenant_principal), session: Session = Depends(db_session),
                        app: App = Depends(get_app)) -> Response:
    """The attachment's bytes with its content type, always as a download (never rendered inline)."""
    view = own_message(session, principal, message_id)
    if index >= len(view.attachments) or not view.attachments[index].get("sha256"):
        raise NotFound(f"message {message_id} has no attachment {index}")
    attachment = view.attachments[index]
    content_type = str(attachment.get("content_type") or "application/octet-stream")
    if not re.fullmatch(r"[\w.+-]+/[\w.+-]+", content_type):
        content_type = "application/octet-stream"
    return Response(app.blobs.get(attachment["sha256"]), media_type=content_type, headers={
        "Content-Disposition": content_disposition(str(attachment.get("filename") or "attachment")),
        "X-Content-Type-Options": "nosniff"})


SinceParam = Annotated[str | None, Query(max_length=40, description="From this day or instant on (YYYY-MM-DD or "
                                                                    "ISO 8601 date-time; naive is UTC)")]
UntilParam = Annotated[str | None, Query(max_length=40, description="Up to this instant, or through the end of "
                                                                    "this day (YYYY-MM-DD)")]


@router.get("/conversations/{conversation_id}/export.mbox", response_class=Response,
            responses={200: {"content": {"application/mbox": {}}, "description": "The period's messages as mbox"}})
def export_mbox(conversation_id: RowId, since: SinceParam = None, until: UntilParam = None,
                principal: Principal = Depends(tenant_principal), session: Session = Depends(db_session),
                app: App = Depends(get_app)) -> Response:
    """The messages of the period (all by default): customer mail as received, staff messages and notes rebuilt."""
    period = Period.parse(since, until)
    summary, messages = own_conversation(session, principal, conversation_id)
    items = collect(session, app.blobs, summary.tenant_id, messages, period)
    return Response(to_mbox(items), media_type="application/mbox",
                    headers={"Content-Disposition": content_disposition(f"{summary.reference}.mbox")})


@router.get("/conversations/{conversation_id}/export.pdf", response_class=Response,
            responses={200: {"content": {"application/pdf": {}}, "description": "A printable transcript"}})
def export_pdf(conversation_id: RowId, since: SinceParam = None, until: UntilParam = None,
               principal: Principal = Depends(tenant_principal), session: Session = Depends(db_session),
               app: App = Depends(get_app)) -> Response:
    """A printable transcript of the period, internal notes labelled, bounces shown as delivery failures."""
    period = Period.parse(since, until)
    summary, messages = own_conversation(session, principal, conversation_id)
    items = collect(session, app.blobs, summary.tenant_id, messages, period, raw=False)
    return Response(to_pdf(summary, items, period), media_type="application/pdf",
                    headers={"Content-Disposition": content_disposition(f"{summary.reference}.pdf")})
