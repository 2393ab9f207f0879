"""Queue outbound messages: render once, store the row, commit, then hand the id to the queue.

Rendering happens here, at queue time, and the rendered parts are stored on
the row, so every attempt sends the same content with the same Message-ID:
the signature appended at render time can never be appended again on a
re-send. A template error fails the staff action at once instead of later.
"""

from __future__ import annotations

import mimetypes
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from sqlalchemy.orm import Session

from postroom.app import App
from postroom.outbound.model import Brand, OutboundContext
from postroom.outbound.render import Renderer
from postroom.rendered import AttachmentRef, Rendered
from postroom.storage import outbound as outbound_store
from postroom.storage.outbound import OutboundRecord
from postroom.storage.tenants import TenantInfo

Dispatch = Callable[[Iterable[int]], None]

_renderers: dict[Path, Renderer] = {}
_lock = threading.Lock()


def renderer_for(app: App) -> Renderer:
    """One renderer (and its compiled templates) per template root, shared by threads."""
    root = app.settings.data_dir / "templates"
    with _lock:
        if root not in _renderers:
            _renderers[root] = Renderer(root)
        return _renderers[root]


def brand(app: App, tenant: TenantInfo) -> Brand:
    """The tenant as customers see it; ``locale``, ``outbound_sender``, ``outbound_domain`` and
    ``portal_url`` come from the tenant's settings."""
    options = tenant.settings or {}
    return Brand(slug=tenant.slug, name=tenant.name or tenant.slug,
                 domain=options.get("outbound_domain") or f"{tenant.slug}.{app.settings.mail_domain}",
                 locale=options.get("locale", "en"), sender=options.get("outbound_sender"),
                 portal_url=options.get("portal_url"))


def store_attachment(app: App, filename: str, data: bytes, content_type: str | None = None) -> AttachmentRef:
    """Put the bytes in the blob store; the message keeps only the reference."""
    guessed = content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
    return AttachmentRef(filename=filename, content_type=guessed, sha256=app.blobs.put(data), size=len(data))


def attach_paths(app: App, paths: Iterable[str | Path]) -> tuple[AttachmentRef, ...]:
    return tuple(store_attachment(app, Path(p).name, Path(p).read_bytes()) for p in paths)


def render(app: App, ctx: OutboundContext, *, channel: str = "email", message_id: str | None = None) -> Rendered:
    """Render for a channel: the portal gets the notification templates, whatever the purpose (``ctx.kind``)."""
    if channel not in ("email", "portal"):
        raise ValueError(f"unknown channel {channel!r}")
    template_ctx = replace(ctx, kind="notification") if channel == "portal" else ctx
    return replace(renderer_for(app).render(template_ctx, message_id=message_id), kind=ctx.kind)


def store(session: Session, app: App, ctx: OutboundContext, rendered: Rendered, *, tenant_id: int,
          channel: str = "email", staff_email: str | None = None) -> OutboundRecord:
    """Add the queued row in the caller's transaction (with the staff message, when there is one)."""
    payload: dict[str, object] = {"reference": ctx.reference}
    if ctx.staff is not None:
        payload["staff"] = {"name": ctx.staff.name, "email": ctx.staff.email}
    return outbound_store.queue_outbound(
        session, tenant_id=tenant_id, rendered=rendered, channel=channel, conversation_id=ctx.conversation_id,
        staff_email=staff_email or (ctx.staff.email if ctx.staff else None),
        recipient_names={ctx.recipient.email: ctx.recipient.name}, payload=payload,
        lifetime=timedelta(seconds=app.settings.outbound_lifetime_seconds),
    )


def queue_message(app: App, ctx: OutboundContext, *, tenant_id: int, channel: str = "email",
                  staff_email: str | None = None, dispatch: Dispatch | None = None,
                  message_id: str | None = None) -> OutboundRecord:
    """Render ``ctx``, commit it as a queued outbound row, then dispatch its id (if a queue is given)."""
    rendered = render(app, ctx, channel=channel, message_id=message_id)
    with app.session() as session:
        record = store(session, app, ctx, rendered, tenant_id=tenant_id, channel=channel, staff_email=staff_email)
    if dispatch is not None:
        dispatch([record.id])
    return record
