"""Inbound bounces -> the outbound message and recipient they name, and a warning for staff.

The threading side stores every bounce against the message it returned
(``conversations.record`` -> ``message_bounces``); this module acts on those
rows: mark our outbound message and the failed recipients ``bounced``, raise
a ``delivery_failed`` event for staff, and mark the bounce handled. It runs in
the inbound pipeline's transaction, so a retried inbound row cannot double it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session

from postroom.model import Bounce
from postroom.storage import bounces as bounce_store
from postroom.storage import outbound as store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BounceApplied:
    bounce_id: int
    outbound_id: int | None
    recipients: tuple[str, ...]
    permanent: bool
    event_id: int | None


def handle_bounces(session: Session, tenant_id: int) -> list[BounceApplied]:
    """Act on every bounce of the tenant not handled yet; bounces of mail postroom never sent are just closed."""
    applied = []
    for bounce in bounce_store.unhandled_bounces(session, tenant_id):
        applied.append(_apply(session, tenant_id, bounce))
        bounce_store.mark_bounce_handled(session, bounce.id)
    return applied


def _apply(session: Session, tenant_id: int, bounce: bounce_store.BounceInfo) -> BounceApplied:
    record = store.by_message_id(session, tenant_id, bounce.header_message_id) if bounce.header_message_id else None
    if record is None:
        return BounceApplied(bounce.id, None, (), bool(bounce.permanent), None)
    permanent = bool(bounce.permanent)
    addresses = bounce.permanent or bounce.temporary
    reason = f"bounced ({bounce.status or ('permanent' if permanent else 'delayed')}): {', '.join(addresses)}"
    updated, matched = store.mark_bounced(session, record.id, tuple(addresses), permanent=permanent, response=reason)
    event_id = None
    if permanent:
        event_id = store.raise_failure_event(session, updated, reason=reason, recipients=matched or tuple(addresses))
    log.info("outbound %s: %s", record.id, reason)
    return BounceApplied(bounce.id, record.id, matched, permanent, event_id)


def handle_returned(session: Session, tenant_id: int, outbound_id: int, bounce: Bounce | None) -> BounceApplied:
    """A message came back to one outbound message's own bounce address (VERP): that message bounced.

    The address names the message, so nothing of the original needs to be
    quoted. A DSN that lists addresses decides which recipients failed and
    whether for good; a notice that names none (qmail, plain text) fails
    every recipient of the message, permanently.
    """
    record = store.get_outbound(session, outbound_id)
    permanent_list = tuple(bounce.permanent) if bounce else ()
    temporary_list = tuple(bounce.temporary) if bounce else ()
    permanent = bool(permanent_list) or not temporary_list
    addresses = permanent_list or temporary_list or tuple(r.address for r in record.recipients)
    status = bounce.status if bounce and bounce.status else ("permanent" if permanent else "delayed")
    reason = f"bounced ({status}): {', '.join(addresses)}"
    updated, matched = store.mark_bounced(session, record.id, addresses, permanent=permanent, response=reason)
    bounce_store.flag_bounced(session, tenant_id, record.message_id)
    event_id = None
    if permanent:
        event_id = store.raise_failure_event(session, updated, reason=reason, recipients=matched or addresses)
    log.info("outbound %s: %s (returned to its bounce address)", record.id, reason)
    return BounceApplied(0, record.id, matched, permanent, event_id)
