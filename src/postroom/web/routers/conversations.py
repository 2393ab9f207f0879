"""Tenant API over conversations and the unsorted inbox; every row is checked against the key's tenant.

A row of another tenant is answered exactly like a missing one (404), so ids
reveal nothing across tenants.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field, model_validator
from sqlalchemy.orm import Session

from postroom.app import App
from postroom.errors import NotFound, PostroomError
from postroom.storage import conversations, inbound, staff
from postroom.storage.apikeys import Principal
from postroom.storage.conversations import ConversationSummary, MessageView
from postroom.web import exports
from postroom.web.auth import tenant_principal
from postroom.web.deps import RowId, db_session, get_app
from postroom.web.errors import ERROR_RESPONSES

router = APIRouter(prefix="/api/v1", tags=["conversations"], responses=ERROR_RESPONSES)

ConversationStatus = Literal["open", "awaiting_feedback", "in_progress", "closed"]
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

    @classmethod
    def of(cls, summary: ConversationSummary) -> ConversationOut:
        return cls(**{name: getattr(summary, name) for name in cls.model_fields})


class ConversationDetail(ConversationOut):
    messages: list[MessageOut]


class ConversationChange(BaseModel):
    """Only the fields sent are changed; ``responsible_user_id: null`` un-assigns."""

    status: ConversationStatus | None = None
    responsible_user_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    responsible_team_id: int | None = Field(default=None, ge=1, le=2**31 - 1)


class NoteIn(BaseModel):
    user_id: int = Field(ge=1, le=2**31 - 1, description="The staff user writing the note")
    text: str = Field(min_length=1, max_length=100_000)


class MoveIn(BaseModel):
    conversation_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    new: bool = False

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


def own_conversation(session: Session, principal: Principal,
                     conversation_id: int) -> tuple[ConversationSummary, list[MessageView]]:
    try:
        summary, messages = conversations.get_conversation(session, conversation_id)
    except NotFound:
        summary, messages = None, []
    if summary is None or summary.tenant_id != principal.tenant_id:
        raise NotFound(f"no conversation {conversation_id}")
    return summary, messages


def own_message(session: Session, principal: Principal, message_id: int) -> MessageView:
    """A message belongs to the tenant of its conversation, or (unsorted) of the inbound row it came from."""
    try:
        view = conversations.get_message(session, message_id)
        if view.conversation_id is not None:
            tenant_id = conversations.get_conversation(session, view.conversation_id)[0].tenant_id
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


@router.get("/conversations", response_model=list[ConversationOut])
def list_conversations(principal: Principal = Depends(tenant_principal), session: Session = Depends(db_session),
                       status: ConversationStatus | None = None,
                       limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[ConversationOut]:
    """The tenant's conversations, most recently active first."""
    return [ConversationOut.of(c) for c in conversations.list_conversations(session, principal.tenant, status=status,
                                                                            limit=limit)]


@router.get("/conversations/{conversation_id}", response_model=ConversationDetail)
def show_conversation(conversation_id: RowId, principal: Principal = Depends(tenant_principal),
                      session: Session = Depends(db_session)) -> ConversationDetail:
    """One conversation with its messages in order; internal notes have ``internal: true``."""
    return detail(session, principal, conversation_id)


@router.patch("/conversations/{conversation_id}", response_model=ConversationDetail)
def change_conversation(conversation_id: RowId, change: ConversationChange,
                        principal: Principal = Depends(tenant_principal),
                        session: Session = Depends(db_session)) -> ConversationDetail:
    """Change status and/or the responsible user or team."""
    summary, _ = own_conversation(session, principal, conversation_id)
    sent = change.model_fields_set
    user, team = change.responsible_user_id, change.responsible_team_id
    if user is not None and _user_tenant(session, user) != principal.tenant_id:
        raise PostroomError(f"no staff user {change.responsible_user_id} in this tenant")
    if team is not None and _team_tenant(session, team) != principal.tenant_id:
        raise PostroomError(f"no team {change.responsible_team_id} in this tenant")
    if change.status is not None:
        conversations.set_status(session, conversation_id, change.status)
    if {"responsible_user_id", "responsible_team_id"} & sent:
        conversations.assign(
            session, conversation_id,
            user_id=change.responsible_user_id if "responsible_user_id" in sent else summary.responsible_user_id,
            team_id=change.responsible_team_id if "responsible_team_id" in sent else summary.responsible_team_id)
    session.flush()
    return detail(session, principal, conversation_id)


def _user_tenant(session: Session, user_id: int) -> int | None:
    try:
        return staff.get_user(session, user_id).tenant_id
    except NotFound:
        return None


def _team_tenant(session: Session, team_id: int) -> int | None:
    try:
        return staff.get_team(session, team_id).tenant_id
    except NotFound:
        return None


@router.post("/conversations/{conversation_id}/notes", response_model=MessageOut, status_code=201)
def add_note(conversation_id: RowId, note: NoteIn, principal: Principal = Depends(tenant_principal),
             session: Session = Depends(db_session)) -> MessageOut:
    """Add an internal note (never mailed to the customer)."""
    own_conversation(session, principal, conversation_id)
    if _user_tenant(session, note.user_id) != principal.tenant_id:
        raise PostroomError(f"no staff user {note.user_id} in this tenant")
    row = conversations.add_staff_message(session, conversation_id, note.user_id, kind="note", text=note.text)
    return MessageOut.of(conversations.get_message(session, row))


@router.get("/inbox", response_model=list[MessageOut])
def list_inbox(principal: Principal = Depends(tenant_principal), session: Session = Depends(db_session),
               limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[MessageOut]:
    """The unsorted inbox: messages no conversation claimed, newest first."""
    return [MessageOut.of(m) for m in conversations.list_inbox(session, principal.tenant, limit=limit)]


@router.get("/messages/{message_id}", response_model=MessageOut)
def show_message(message_id: RowId, principal: Principal = Depends(tenant_principal),
                 session: Session = Depends(db_session)) -> MessageOut:
    return MessageOut.of(own_message(session, principal, message_id))


@router.post("/messages/{message_id}/move", response_model=Moved)
def move_message(message_id: RowId, move: MoveIn, principal: Principal = Depends(tenant_principal),
                 session: Session = Depends(db_session)) -> Moved:
    """Move a message (unsorted or misfiled) into a conversation of the tenant, or into a new one."""
    own_message(session, principal, message_id)
    if move.conversation_id is not None:
        own_conversation(session, principal, move.conversation_id)
    moved = conversations.move_message(session, message_id, to_conversation_id=move.conversation_id, new=move.new)
    return Moved(message_id=moved.message_id, from_conversation_id=moved.from_conversation_id,
                 to_conversation_id=moved.to_conversation_id, created_conversation=moved.created_conversation)


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


@router.get("/conversations/{conversation_id}/export.mbox", response_class=Response,
            responses={200: {"content": {"application/mbox": {}}, "description": "All messages as mbox"}})
def export_mbox(conversation_id: RowId, principal: Principal = Depends(tenant_principal),
                session: Session = Depends(db_session), app: App = Depends(get_app)) -> Response:
    """Every message of the conversation: customer mail as received, staff messages and notes rebuilt."""
    summary, messages = own_conversation(session, principal, conversation_id)
    items = [(m, app.blobs.get(inbound.get_inbound(session, m.inbound_id).sha256) if m.inbound_id else None)
             for m in messages]
    return Response(exports.to_mbox(items), media_type="application/mbox",
                    headers={"Content-Disposition": content_disposition(f"{summary.reference}.mbox")})


@router.get("/conversations/{conversation_id}/export.pdf", response_class=Response,
            responses={200: {"content": {"application/pdf": {}}, "description": "A printable transcript"}})
def export_pdf(conversation_id: RowId, principal: Principal = Depends(tenant_principal),
               session: Session = Depends(db_session)) -> Response:
    """A printable transcript of the conversation, internal notes labelled."""
    summary, messages = own_conversation(session, principal, conversation_id)
    return Response(exports.to_pdf(summary, messages), media_type="application/pdf",
                    headers={"Content-Disposition": content_disposition(f"{summary.reference}.pdf")})
