"""What an export needs beyond the conversation views: raw bytes' keys and which recipients a bounce names.

Both are read for a whole conversation in one statement each, so an export of a
long conversation costs a fixed number of queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from postroom import tokens
from postroom.addresses import BOUNCE_PREFIX
from postroom.storage.tables import InboundMessage, MessageBounce, OutboundMessage, OutboundRecipient
from postroom.storage.tenants import tenant_secret


@dataclass(frozen=True)
class FailedDelivery:
    """The recipients one bounce message reports: ``permanent`` failed for good, ``temporary`` were delayed."""

    permanent: tuple[str, ...] = ()
    temporary: tuple[str, ...] = ()
    status: str | None = None


def raw_keys(session: Session, tenant_id: int, inbound_ids: Sequence[int]) -> dict[int, str]:
    """Blob keys (sha256) of the tenant's inbound rows, by row id."""
    ids = sorted(set(inbound_ids))
    if not ids:
        return {}
    rows = session.execute(select(InboundMessage.id, InboundMessage.sha256)
                           .where(InboundMessage.tenant_id == tenant_id, InboundMessage.id.in_(ids)))
    return dict(rows.tuples().all())


def failed_deliveries(session: Session, tenant_id: int, bounces: Sequence[tuple[int, int | None]]
                      ) -> dict[int, FailedDelivery]:
    """For each bounce message (row id, inbound row id): the recipients it reported as failed.

    A bounce that quoted the original has ``message_bounces`` rows; one that came back to a
    message's own signed bounce address (VERP) names its outbound message by that address,
    whose recipients were marked ``bounced``.
    """
    ids = sorted({row for row, _ in bounces})
    if not ids:
        return {}
    found = _quoted(session, tenant_id, ids)
    secret = tenant_secret(session, tenant_id)
    pending = {inbound_id: row for row, inbound_id in bounces if row not in found and inbound_id is not None}
    returned: dict[int, int] = {}
    for inbound_id, rcpts in session.execute(select(InboundMessage.id, InboundMessage.rcpt_tos).where(
            InboundMessage.tenant_id == tenant_id, InboundMessage.id.in_(sorted(pending)))):
        for rcpt in rcpts or ():
            token = tokens.token_of(str(rcpt), BOUNCE_PREFIX)
            outbound_id = tokens.verify_bounce_token(secret, token) if token else None
            if outbound_id is not None:
                returned[outbound_id] = pending[inbound_id]
                break
    if returned:
        rows = session.execute(
            select(OutboundRecipient.outbound_id, OutboundRecipient.address, OutboundRecipient.status)
            .join(OutboundMessage, OutboundMessage.id == OutboundRecipient.outbound_id)
            .where(OutboundMessage.tenant_id == tenant_id, OutboundRecipient.outbound_id.in_(sorted(returned)))
            .order_by(OutboundRecipient.id))
        for outbound_id, address, status in rows:
            before = found.get(returned[outbound_id], FailedDelivery())
            if status == "bounced":
                found[returned[outbound_id]] = FailedDelivery(before.permanent + (address,), before.temporary,
                                                              before.status)
    return found


def _quoted(session: Session, tenant_id: int, ids: list[int]) -> dict[int, FailedDelivery]:
    found: dict[int, FailedDelivery] = {}
    rows = session.execute(select(MessageBounce.bounce_message_id, MessageBounce.permanent, MessageBounce.temporary,
                                  MessageBounce.status)
                           .where(MessageBounce.tenant_id == tenant_id, MessageBounce.bounce_message_id.in_(ids))
                           .order_by(MessageBounce.id))
    for row_id, permanent, temporary, status in rows:
        before = found.get(row_id, FailedDelivery())
        found[row_id] = FailedDelivery(before.permanent + tuple(permanent or ()),
                                       before.temporary + tuple(temporary or ()), status or before.status)
    return found
