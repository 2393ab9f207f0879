"""Staff replies over HTTP: the portal posts text (and files) as a staff user, postroom queues the mail.

The reply goes through ``postroom.outbound.actions.reply`` exactly as the CLI's
does (render, staff message and outbound row in one transaction, then the
queue), so the HTTP API cannot send anything the outbound side would not.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath, PureWindowsPath
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, HTTPException, UploadFile
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from postroom.app import App
from postroom.errors import NotFound, PostroomError
from postroom.outbound import actions, compose
from postroom.outbound.compose import Dispatch
from postroom.rendered import AttachmentRef
from postroom.statuses import ConversationStatus
from postroom.storage import conversation_edits, conversation_views, staff
from postroom.storage.apikeys import Principal
from postroom.web.auth import tenant_principal
from postroom.web.deps import RowId, db_session, get_app, get_outbound_dispatch
from postroom.web.errors import ERROR_RESPONSES
from postroom.web.limits import takes_upload
from postroom.web.routers.conversations import MessageOut, own_conversation

router = APIRouter(prefix="/api/v1", tags=["conversations"],
                   responses={**ERROR_RESPONSES, 413: ERROR_RESPONSES[400] | {"description": "Attachments too large"}})

MAX_FILES = 20
UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f]+")


class ReplyOut(BaseModel):
    outbound_id: int = Field(description="The queued outbound message (see the operator's outbound list)")
    outbound_status: str
    message: MessageOut


def _filename(upload: UploadFile, index: int) -> str:
    """The base name the browser sent, without any path or control characters."""
    raw = upload.filename or ""
    name = UNSAFE_NAME.sub("", PureWindowsPath(PurePosixPath(raw).name).name).strip()
    return name[:255] or f"attachment-{index + 1}"


def _store_files(app: App, files: list[UploadFile]) -> tuple[AttachmentRef, ...]:
    """Blobs first (content-addressed, so a failed reply only leaves an unreferenced blob)."""
    if len(files) > MAX_FILES:
        raise PostroomError(f"at most {MAX_FILES} attachments per reply")
    budget = app.settings.max_message_size
    refs = []
    for index, upload in enumerate(files):
        data = upload.file.read(budget + 1)
        budget -= len(data)
        if budget < 0:
            raise HTTPException(413, f"attachments exceed {app.settings.max_message_size} bytes in total")
        content_type = upload.content_type if upload.content_type and "/" in upload.content_type else None
        refs.append(compose.store_attachment(app, _filename(upload, index), data, content_type))
    return tuple(refs)


@router.post("/conversations/{conversation_id}/replies", response_model=ReplyOut, status_code=201)
@takes_upload
def post_reply(conversation_id: RowId,
               user_id: Annotated[int, Form(ge=1, le=2**31 - 1, description="The staff user replying")],
               text: Annotated[str, Form(min_length=1, max_length=100_000)],
               channel: Annotated[Literal["email", "portal"] | None,
                                  Form(description="Default: the contact's channel")] = None,
               status: Annotated[ConversationStatus | None, Form(description="New status after the reply")] = None,
               files: Annotated[list[UploadFile] | None, File(description="Attachments")] = None,
               principal: Principal = Depends(tenant_principal), session: Session = Depends(db_session),
               app: App = Depends(get_app), dispatch: Dispatch | None = Depends(get_outbound_dispatch)) -> ReplyOut:
    """Queue a staff reply to the conversation's contact (multipart form); the answer names the outbound row."""
    own_conversation(session, principal, conversation_id)
    try:
        user = staff.get_user(session, user_id)
    except NotFound:
        user = None
    if user is None or user.tenant_id != principal.tenant_id or not user.active:
        raise PostroomError(f"no active staff user {user_id} in this tenant")
    refs = _store_files(app, files or [])
    # the reply runs in its own transaction: end this one first (SQLite holds the write lock from BEGIN)
    session.commit()
    queued = actions.reply(app, conversation_id, user.email, text, attachments=refs, channel=channel,
                           dispatch=dispatch)
    if status is not None:
        conversation_edits.update_conversations(session, principal.tenant_id, [conversation_id], status=status)
    return ReplyOut(outbound_id=queued.outbound.id, outbound_status=queued.outbound.status,
                    message=MessageOut.of(conversation_views.get_message(session, queued.message_row)))
