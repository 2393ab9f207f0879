"""Mail staff their notification events: at once, or as a digest every N minutes (the sweeper's job).

Each user with mail on has a cursor over the tenant's events (see
``storage.staff_mail``). One transaction renders and queues the user's mail
through ``compose`` and moves the cursor, only if no other run moved it first,
so a crash or a second sweeper never mails an event twice; the mail then goes
out like any outbound message and shows in ``postroom outbound list``.

What a mail may show: a customer's words to the staff of their tenant; a
note's text only to the user it mentions; never a note's text otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from postroom.app import App
from postroom.outbound import compose
from postroom.outbound import locale as locales
from postroom.outbound.compose import Dispatch
from postroom.outbound.model import Brand, OutboundContext, Person
from postroom.storage import conversation_views, tenants
from postroom.storage import staff_mail as store
from postroom.storage.conversation_views import ConversationSummary, EventView
from postroom.storage.staff_mail import MailSetting, MessageGist

log = logging.getLogger(__name__)

EXCERPT = 600


class Superseded(Exception):
    """Another run mailed these events first; this run's mail is rolled back."""


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT else flat[:EXCERPT].rstrip() + " …"


def describe(event: EventView, setting: MailSetting, summary: ConversationSummary | None,
             gist: MessageGist | None, locale: str) -> tuple[str, str]:
    """(headline, body) for one event in the user's language; the body never holds a note's text unless
    the note mentions this user."""
    t = locales.translator(locale)
    payload = event.payload
    subject = summary.subject if summary else str(payload.get("subject") or "")
    reference = summary.reference if summary else str(payload.get("reference") or "")
    if event.kind in ("new_conversation", "customer_message"):
        author = (gist.author_name or gist.author_email) if gist else ""
        return t(f"staff_{event.kind}", author=author, subject=subject, reference=reference), _customer_words(gist)
    if event.kind == "mention":
        headline = t("staff_mention", author=str(payload.get("by_name") or ""), subject=subject, reference=reference)
        return headline, _mentioned_words(event, setting)
    if event.kind == "assigned":
        return t("staff_assigned", subject=subject, reference=reference), ""
    return _delivery_failed(t, payload, subject)


def _customer_words(gist: MessageGist | None) -> str:
    """An excerpt of a message that came in from a customer; nothing of a note or of staff's own mail."""
    if gist is None or gist.kind == "note" or gist.direction != "in":
        return ""
    return _excerpt(gist.text)


def _delivery_failed(t: Callable[..., str], payload: Mapping[str, Any], subject: str) -> tuple[str, str]:
    """The failed mail's own subject if it had one, who did not get it, and why."""
    recipients = ", ".join(str(r) for r in payload.get("recipients") or ())
    headline = t("staff_delivery_failed", subject=str(payload.get("subject") or subject), recipients=recipients)
    return headline, str(payload.get("reason") or "")[:EXCERPT]


def _mentioned_words(event: EventView, setting: MailSetting) -> str:
    """The note's excerpt, only for the user the note mentions."""
    if event.recipient_type == "user" and event.recipient_id == setting.user_id:
        return _excerpt(str(event.payload.get("excerpt") or ""))
    return ""


def _portal_link(brand: Brand, conversation_id: int | None) -> str | None:
    if brand.portal_url and conversation_id is not None:
        return f"{brand.portal_url.rstrip('/')}/conversations/{conversation_id}"
    return None


Described = tuple[EventView, str, str]


def _described(session: Session, setting: MailSetting, events: Sequence[EventView], locale: str) -> list[Described]:
    """Each event with its (headline, body); only conversations and messages of the user's tenant are read."""
    conversation_ids = sorted({e.conversation_id for e in events if e.conversation_id is not None})
    summaries = {c.id: c for c in conversation_views.summaries(session, conversation_ids)
                 if c.tenant_id == setting.tenant_id}
    gists = store.message_gists(session, setting.tenant_id, [e.message_id for e in events if e.message_id])
    return [(e, *describe(e, setting, summaries.get(e.conversation_id or 0), gists.get(e.message_id or 0), locale))
            for e in events]


def _notice(base: OutboundContext, brand: Brand, described: Described) -> OutboundContext:
    """One mail for one event, linking its conversation."""
    event, headline, body = described
    return replace(base, subject=headline, text="\n\n".join(p for p in (headline, body) if p),
                   conversation_id=event.conversation_id, portal_link=_portal_link(brand, event.conversation_id))


def _digest(base: OutboundContext, brand: Brand, described: Sequence[Described]) -> OutboundContext:
    """One mail listing every event: its headline, then its body and link indented under it."""
    t = locales.translator(brand.locale)
    lines = []
    for event, headline, body in described:
        link = _portal_link(brand, event.conversation_id)
        lines.append("\n".join(["- " + headline] + [f"  {extra}" for extra in (body, link) if extra]))
    subject = t("staff_digest_subject", count=len(described), tenant=brand.name)
    return replace(base, kind="staff_digest", subject=subject, text="\n\n".join(lines), portal_link=brand.portal_url)


def _contexts(session: Session, app: App, setting: MailSetting, events: Sequence[EventView]) -> list[OutboundContext]:
    tenant = next(t for t in tenants.list_tenants(session) if t.id == setting.tenant_id)
    brand = compose.brand(app, tenant)
    described = _described(session, setting, events, brand.locale)
    recipient = Person(setting.name, setting.email)
    base = OutboundContext(kind="staff_notice", tenant=brand, recipient=recipient, subject="", reference="")
    if setting.mode == "immediate":
        return [_notice(base, brand, one) for one in described]
    return [_digest(base, brand, described)]


def _mail_user(app: App, setting: MailSetting, now: datetime) -> list[int]:
    with app.session() as session:
        events = store.pending_events(session, setting)
        if not events:
            return []
        ids = []
        for ctx in _contexts(session, app, setting, events):
            rendered = compose.render(app, ctx)
            ids.append(compose.store(session, app, ctx, rendered, tenant_id=setting.tenant_id).id)
        if not store.advance(session, setting, events[-1].id, now):
            raise Superseded(f"user {setting.user_id}")
    log.info("staff mail: %s mail(s) for %s events to user %s (%s)", len(ids), len(events), setting.user_id,
             setting.mode)
    return ids


def due(setting: MailSetting, now: datetime) -> bool:
    if setting.mode == "immediate":
        return True
    last = setting.last_mailed_at
    return last is None or now >= last + timedelta(minutes=setting.every_minutes)


def run(app: App, *, dispatch: Dispatch | None = None, now: datetime | None = None) -> list[int]:
    """Queue the mail every user with mail on is due; the outbound ids (dispatched when a queue is given)."""
    now = now or datetime.now(UTC)
    with app.session() as session:
        settings = store.mail_on(session)
    queued: list[int] = []
    for setting in settings:
        if not due(setting, now):
            continue
        try:
            queued += _mail_user(app, setting, now)
        except Superseded:
            continue
        except Exception as exc:  # one user's broken template must not stop the others' mail
            log.warning("staff mail to user %s failed, retried next sweep: %s", setting.user_id, exc)
    if queued and dispatch is not None:
        dispatch(queued)
    return queued
