"""Mail that rule actions send: the auto-reply and the forwarded copy, queued through outbound.

Both are queued in the inbound row's own transaction, so a retried pipeline
run either finds them (the row is done) or re-queues them after a rollback:
never zero, never two. Message-IDs are derived from the inbound row, so even
an operator re-run of the same row cannot queue a second copy. The caller
dispatches the returned outbound ids after the commit.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from jinja2 import TemplateError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from postroom.app import App
from postroom.errors import PostroomError
from postroom.model import ParsedMessage
from postroom.outbound import actions, compose
from postroom.outbound.addressing import format_address
from postroom.outbound.model import Person
from postroom.outbound.render import paragraphs
from postroom.rendered import AttachmentRef, Rendered
from postroom.rules.model import RoutingDecision
from postroom.storage import contacts, conversations, staff_messages, tenants
from postroom.storage import outbound as outbound_store
from postroom.storage.inbound import InboundRecord

log = logging.getLogger(__name__)

FORWARD_MARKER = "X-Postroom-Forward"


def _message_id(kind: str, record: InboundRecord, domain: str, n: int = 0) -> str:
    return f"<{kind}.{record.id}.{n}.{record.sha256[:16]}@{domain}>"


def auto_reply(app: App, session: Session, record: InboundRecord, parsed: ParsedMessage, decision: RoutingDecision,
               *, conversation_id: int | None, sender: str, suppressed: str | None) -> tuple[int | None, str | None]:
    """Queue the decision's auto-reply to ``sender``; (outbound id, None) or (None, why not).

    Sent with a null envelope sender (RFC 3834 3.3: nothing answers or
    bounces back to it) and ``Auto-Submitted: auto-replied`` (set by the
    renderer for automatic kinds). The template comes from the rule, the
    channel from the recipient's contact (email when they have none).
    """
    template = decision.auto_reply
    if template is None:
        return None, None
    reason = suppressed
    if reason is None and conversation_id is None:
        reason = "message went to the unsorted inbox, not a conversation"
    if reason is None and conversations.loop_suppressed(session, conversation_id, sender):  # type: ignore[arg-type]
        reason = "conversation is loop-suppressed for this sender"
    if reason is not None:
        return None, reason
    assert conversation_id is not None
    try:
        ctx, tenant_id = actions.conversation_context(session, app, conversation_id, kind="auto_reply")
        ctx = replace(ctx, template=template)
        contact_id = contacts.contact_for_address(session, tenant_id, sender)
        if ctx.recipient.email.lower() != sender:
            name = parsed.sender.name if parsed.sender else ""
            ctx = replace(ctx, recipient=Person(name, sender), reply_address=staff_messages.reply_address(
                session, conversation_id, ctx.tenant.domain, contact_id))
        channel = contacts.preferences(session, contact_id)[0]
        rendered = replace(compose.render(app, ctx, channel=channel,
                                          message_id=_message_id("auto", record, ctx.tenant.domain)), mail_from="")
        with session.begin_nested():
            queued = compose.store(session, app, ctx, rendered, tenant_id=tenant_id, channel=channel)
    except IntegrityError:
        return None, "already queued for this message"
    except actions.Blocked as exc:
        return None, str(exc)
    except (PostroomError, TemplateError) as exc:
        log.error("inbound %s: auto-reply %r not sent: %s", record.id, template, exc)
        return None, f"cannot render template {template!r}: {exc}"
    return queued.id, None


def forward_copies(app: App, session: Session, record: InboundRecord, parsed: ParsedMessage,
                   decision: RoutingDecision, *, conversation_id: int | None) -> tuple[list[int], str | None]:
    """Queue one copy per forward address, the original attached as message/rfc822; (outbound ids, why not)."""
    if not decision.forward:
        return [], None
    if parsed.header(FORWARD_MARKER):
        return [], "message is itself a forwarded copy (loop protection)"
    tenant = tenants.get_tenant(session, record.tenant)
    brand = compose.brand(app, tenant)
    rules = ", ".join(dict.fromkeys(a.rule for a in decision.actions if a.kind == "forward"))
    sender = parsed.sender.address if parsed.sender else record.mail_from or "(unknown sender)"
    text = (f"A copy of a message received for {brand.name}, forwarded by the rule {rules}.\n\n"
            f"From: {sender}\nSubject: {parsed.subject}\nTo: {', '.join(record.rcpt_tos)}\n\n"
            "The original message is attached.\n")
    original = AttachmentRef(filename="original.eml", content_type="message/rfc822", sha256=record.sha256,
                             size=record.size)
    ids: list[int] = []
    for n, address in enumerate(decision.forward):
        message_id = _message_id("fwd", record, brand.domain, n)
        subject = f"Fwd: {parsed.subject}" if parsed.subject else "Fwd: (no subject)"
        rendered = Rendered(
            kind="forward", subject=subject, text=text, html=str(paragraphs(text)), message_id=message_id,
            headers=(("From", format_address(brand.name, f"inbox@{brand.domain}")), ("To", address),
                     ("Subject", subject), ("Date", format_datetime(datetime.now(UTC))),
                     ("Message-ID", message_id), ("Auto-Submitted", "auto-generated"),
                     (FORWARD_MARKER, tenant.slug)),
            mail_from=f"postmaster@{brand.domain}", recipients=(address,), attachments=(original,),
        )
        try:
            with session.begin_nested():
                queued = outbound_store.queue_outbound(
                    session, tenant_id=record.tenant_id, rendered=rendered, conversation_id=conversation_id,
                    payload={"inbound_id": record.id, "rule": rules},
                    lifetime=timedelta(seconds=app.settings.outbound_lifetime_seconds))
        except IntegrityError:
            continue
        ids.append(queued.id)
    return ids, None
