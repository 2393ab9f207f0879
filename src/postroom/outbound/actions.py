"""Staff and automatic actions on a conversation, as plain functions (the CLI and HTTP API call these).

``reply`` stores the staff message and its outbound row in one transaction
(the message's Message-ID is the outbound Message-ID, so bounces and the
customer's answer find it), then hands the id to the queue. ``note`` stores
an internal note and sends nothing. Everything written to a contact goes on
the contact's channel (email or portal) unless the caller names one, in the
contact's language (else the tenant's), and never to a blocked address. Contexts are built here from public
messages only: notes, status, assignee and categories never reach a template.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta

from sqlalchemy.orm import Session

from postroom import trust
from postroom.app import App
from postroom.errors import NotFound, PostroomError
from postroom.outbound import compose, locale
from postroom.outbound.compose import Dispatch
from postroom.outbound.model import OutboundContext, Person, QuotedMessage, Staff
from postroom.rendered import AttachmentRef
from postroom.storage import (
    blocks,
    contacts,
    conversation_actions,
    conversation_views,
    conversations,
    mentions,
    staff,
    staff_messages,
    tenants,
)
from postroom.storage import outbound as outbound_store
from postroom.storage.outbound import AttemptRecord, OutboundRecord
from postroom.storage.staff import StaffUserInfo

CHANNELS = ("email", "portal")


class Blocked(PostroomError):
    """The conversation's contact is blocked (spam): nothing may be sent to them."""


@dataclass(frozen=True)
class Queued:
    """A staff reply: the conversation message row and the outbound row that carries it."""

    message_row: int
    outbound: OutboundRecord


def add_user(app: App, tenant: str, *, email: str, name: str, signature_text: str = "",
             signature_html: str | None = None) -> StaffUserInfo:
    with app.session() as session:
        return staff.add_user(session, tenant, email=email, name=name, signature_text=signature_text,
                              signature_html=signature_html or None)


def list_users(app: App, tenant: str) -> list[StaffUserInfo]:
    with app.session() as session:
        return staff.list_users(session, tenant)


def _staff_user(session: Session, tenant_id: int, email: str) -> StaffUserInfo:
    user = staff.user_by_email(session, tenant_id, email)
    if user is None or not user.active:
        raise NotFound(f"no active staff user {email} in this tenant; add one with: postroom user add TENANT "
                       f"--email {email} --name NAME")
    return user


def _public_history(summary: conversation_views.ConversationSummary,
                    messages: Sequence[conversation_views.MessageView]) -> tuple[QuotedMessage, ...]:
    """The contact's own last message, quoted under the reply under the contact's stored name.

    Never a note, never mail someone else wrote into the conversation, never
    automatic, bounced or otherwise flagged mail (``trust.vouched``): staff
    must not mail a stranger's words back to the customer as the customer's.
    The display name in the message's header is the sender's claim; the
    contact's stored name is the tenant's.
    """
    if summary.contact_id is None:
        return ()
    for m in reversed(messages):
        if m.direction != "in" or m.kind == "note" or m.author_contact_id != summary.contact_id \
                or not trust.vouched(m.flags):
            continue
        text = (m.reply_text or m.text).strip()
        if text and m.sent_at is not None:
            return (QuotedMessage(summary.contact_name or summary.contact_email or m.author_email, m.sent_at, text),)
    return ()


def conversation_context(session: Session, app: App, conversation_id: int, *, kind: str, text: str = "",
                         user: StaffUserInfo | None = None,
                         attachments: tuple[AttachmentRef, ...] = ()) -> tuple[OutboundContext, int]:
    """The outbound context for a conversation's contact, and the tenant id."""
    summary, messages = conversation_views.get_conversation(session, conversation_id)
    if not summary.contact_email:
        raise PostroomError(f"conversation {conversation_id} has no contact e-mail address to write to")
    if blocks.is_blocked(session, summary.tenant_id, summary.contact_email):
        raise Blocked(f"{summary.contact_email} is blocked (a conversation was marked spam); nothing is sent to it "
                      f"until: postroom conversations unspam ID")
    tenant = next(t for t in tenants.list_tenants(session) if t.id == summary.tenant_id)
    brand = compose.brand(app, tenant)
    locale = contacts.preferences(session, summary.contact_id)[1]
    if locale:
        brand = replace(brand, locale=locale)
    thread = staff_messages.thread_headers(session, conversation_id)
    author = Staff(user.name, user.email, user.signature_text, user.signature_html or "") if user else None
    ctx = OutboundContext(
        kind=kind, tenant=brand, recipient=Person(summary.contact_name, summary.contact_email),
        subject=summary.subject, reference=thread.reference, text=text, staff=author,
        conversation_id=conversation_id,
        reply_address=staff_messages.reply_address(session, conversation_id, brand.domain, summary.contact_id),
        in_reply_to=thread.in_reply_to, references=thread.references, attachments=attachments,
        history=_public_history(summary, messages) if kind == "reply" else (),
        portal_link=f"{brand.portal_url.rstrip('/')}/conversations/{conversation_id}" if brand.portal_url else None,
    )
    return ctx, summary.tenant_id


def reply(app: App, conversation_id: int, staff_email: str, text: str, *,
          attachments: Iterable[AttachmentRef] = (), channel: str | None = None,
          dispatch: Dispatch | None = None) -> Queued:
    """Queue a staff reply to the conversation's contact (e-mail or portal notification).

    ``channel`` None: the contact's preferred channel.
    """
    if channel is not None and channel not in CHANNELS:
        raise PostroomError(f"channel {channel!r}: use one of {', '.join(CHANNELS)}")
    if not text.strip():
        raise PostroomError("a reply needs some text")
    refs = tuple(attachments)
    with app.session() as session:
        summary, _ = conversation_views.get_conversation(session, conversation_id)
        user = _staff_user(session, summary.tenant_id, staff_email)
        channel = channel or contacts.preferences(session, summary.contact_id)[0]
        ctx, tenant_id = conversation_context(session, app, conversation_id, kind="reply", text=text, user=user,
                                              attachments=refs)
        rendered = compose.render(app, ctx, channel=channel)
        message_row = staff_messages.add_staff_message(
            session, conversation_id, user.id, kind=channel, text=text.strip(), subject=rendered.subject,
            message_id=rendered.message_id, in_reply_to=(ctx.in_reply_to,) if ctx.in_reply_to else (),
            references=ctx.references, attachments=[vars(a) for a in refs],
        )
        record = compose.store(session, app, ctx, rendered, tenant_id=tenant_id, channel=channel)
    if dispatch is not None:
        dispatch([record.id])
    return Queued(message_row, record)


def note(app: App, conversation_id: int, staff_email: str, text: str) -> int:
    """Add an internal note: stored on the conversation, never sent anywhere; @mentioned staff are told."""
    if not text.strip():
        raise PostroomError("a note needs some text")
    with app.session() as session:
        summary, _ = conversation_views.get_conversation(session, conversation_id)
        user = _staff_user(session, summary.tenant_id, staff_email)
        row, _mentioned = mentions.add_note(session, summary.tenant_id, conversation_id, user.id, text.strip())
        return row


def automatic(app: App, conversation_id: int, *, kind: str, text: str = "", template: str | None = None,
              dispatch: Dispatch | None = None) -> OutboundRecord | None:
    """Queue an acknowledgement (``ack``) or a rule's ``auto_reply`` (``template`` = the rule's template name).

    Sent on the contact's channel. Returns None while the contact is in a mail
    loop or blocked.
    """
    if kind not in ("ack", "auto_reply"):
        raise PostroomError(f"automatic mail kind {kind!r}: use ack or auto_reply")
    with app.session() as session:
        try:
            ctx, tenant_id = conversation_context(session, app, conversation_id, kind=kind, text=text)
        except Blocked:
            return None
        ctx = replace(ctx, template=template)
        if conversations.loop_suppressed(session, conversation_id, ctx.recipient.email):
            return None
        channel = contacts.preferences(session, conversation_views.get_conversation(session, conversation_id)[0]
                                       .contact_id)[0]
        record = compose.store(session, app, ctx, compose.render(app, ctx, channel=channel), tenant_id=tenant_id,
                               channel=channel)
    if dispatch is not None:
        dispatch([record.id])
    return record


@dataclass(frozen=True)
class MoveDone:
    """A move and the notice it sent the customer (None: nobody to tell, or the contact is blocked)."""

    moved: conversation_actions.Moved
    notice: OutboundRecord | None


def move(app: App, message_row: int, *, to_conversation_id: int | None = None, new: bool = False,
         force: bool = False, author_email: str | None = None, author_name: str | None = None,
         dispatch: Dispatch | None = None) -> MoveDone:
    """Move a message (``conversation_actions.move_message``) and, in the same transaction, queue the customer's notice.

    The notice (template ``move_notice``, which a tenant can override) goes on
    the contact's channel in their language, only to the message's author and
    only when they are the target conversation's contact: it names that
    conversation, which nobody else may learn of.
    """
    with app.session() as session:
        moved = conversation_actions.move_message(session, message_row, to_conversation_id=to_conversation_id, new=new,
                                           force=force, author_email=author_email, author_name=author_name)
        record = _move_notice(session, app, moved) if moved.notice_contact_id is not None else None
    if record is not None and dispatch is not None:
        dispatch([record.id])
    return MoveDone(moved, record)


def _move_notice(session: Session, app: App, moved: conversation_actions.Moved) -> OutboundRecord | None:
    message = conversation_views.get_message(session, moved.message_id)
    try:
        ctx, tenant_id = conversation_context(session, app, moved.to_conversation_id, kind="move_notice")
    except Blocked:
        return None
    t = locale.translator(ctx.tenant.locale)
    when = message.sent_at or message.created_at
    ctx = replace(ctx, text=t("move_notice_body", subject=message.subject or "-", date=when.strftime("%Y-%m-%d")),
                  in_reply_to=message.message_id or ctx.in_reply_to)
    channel = contacts.preferences(session, moved.notice_contact_id)[0]
    return compose.store(session, app, ctx, compose.render(app, ctx, channel=channel), tenant_id=tenant_id,
                         channel=channel)


def list_outbound(app: App, *, status: str | None = None, tenant: str | None = None,
                  conversation_id: int | None = None, limit: int = 100) -> list[OutboundRecord]:
    with app.session() as session:
        return outbound_store.list_outbound(session, status=status, tenant=tenant, conversation_id=conversation_id,
                                            limit=limit)


def show_outbound(app: App, outbound_id: int) -> tuple[OutboundRecord, list[AttemptRecord]]:
    with app.session() as session:
        return outbound_store.get_outbound(session, outbound_id), outbound_store.attempts_of(session, outbound_id)


def retry_outbound(app: App, outbound_id: int, *, dispatch: Dispatch | None = None) -> OutboundRecord:
    """Operator retry of a failed, bounced or unknown message: same Message-ID and content, fresh lifetime."""
    with app.session() as session:
        record = outbound_store.requeue(session, outbound_id,
                                        lifetime=timedelta(seconds=app.settings.outbound_lifetime_seconds))
    if dispatch is not None:
        dispatch([record.id])
    return record
