"""What every ingress shares: build the intake item, store it durably, count it, hand the ids on."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

from postroom import metrics
from postroom.app import App
from postroom.gateway.addresses import INBOX, Recipient, classify
from postroom.gateway.ingest import _envelope_sender as envelope_sender
from postroom.model import Envelope
from postroom.storage.intake import IntakeItem, store_batch

log = logging.getLogger(__name__)

Dispatch = Callable[[Iterable[int]], None]


def item_for(raw: bytes, *, source: str, tenant_rcpts: dict[int, tuple[str, ...]], peer: str,
             mail_from: str | None = None) -> IntakeItem:
    """An intake item like the gateway's: the envelope sender from the provider or, failing that, the headers."""
    rcpts = tuple(address for addresses in tenant_rcpts.values() for address in addresses)
    return IntakeItem(raw=raw, source=source, tenant_rcpts=tenant_rcpts,
                      envelope=Envelope(mail_from=mail_from if mail_from is not None else envelope_sender(raw),
                                        rcpt_tos=rcpts, peer=peer, received_at=datetime.now(UTC)))


def inbox_of(app: App, tenant_id: int) -> str:
    directory = app.directory()
    return f"{INBOX}@{directory.tenant_domain(directory.slug_of(tenant_id))}"


def tenant_rcpts(app: App, addresses: Iterable[str], *, only_tenant: int | None = None) -> dict[int, tuple[str, ...]]:
    """Recipients that are ours, by tenant, classified exactly like SMTP RCPTs (gateway/addresses.py)."""
    directory = app.directory()
    by_tenant: dict[int, tuple[str, ...]] = {}
    for address in addresses:
        found = classify(address, directory)
        if isinstance(found, Recipient) and only_tenant in (None, found.tenant_id) \
                and found.address not in by_tenant.get(found.tenant_id, ()):
            by_tenant[found.tenant_id] = (*by_tenant.get(found.tenant_id, ()), found.address)
    return by_tenant


def store(app: App, items: Sequence[IntakeItem]) -> list[list[int]]:
    """Store durably (raises when the blob store or the database fails: the source must not be acknowledged)."""
    if not items:
        return []
    with metrics.INTAKE_SECONDS.time():
        ids = store_batch(app.sessions, app.blobs, items)
    for item in items:
        metrics.INGRESS.labels(item.source).inc()
    return ids


def hand_on(dispatch: Dispatch | None, ids: Iterable[int]) -> None:
    """Give the stored ids to the pipeline; failing here loses nothing (the sweeper re-sends unfinished rows)."""
    ids = list(ids)
    if dispatch is None or not ids:
        return
    try:
        dispatch(ids)
    except Exception as exc:
        log.warning("could not dispatch inbound %s (the sweep will): %s", ids, exc)
