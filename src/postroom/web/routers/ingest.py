"""``POST /ingest/{provider}/{tenant}``: provider webhooks (Mailgun, Postmark, SendGrid) into the durable intake.

``web.limits.Gate`` has authenticated the caller from its headers (basic auth,
SendGrid's ?key=) and applies the upload size limit while the body streams in.
The answer is 200 only once the message is stored; a storage failure is a 503,
so the provider retries (its retry is deduplicated by the message's SHA-256).
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from postroom.app import App
from postroom.ingress import webhooks
from postroom.ingress.intake import hand_on, inbox_of, item_for, store, tenant_rcpts
from postroom.ingress.webhooks import Caller, Payload, WebhookRefused
from postroom.web.deps import get_app
from postroom.web.limits import takes_upload

log = logging.getLogger(__name__)
router = APIRouter(prefix="/ingest", tags=["ingest"])


def caller_of(request: Request, provider: str, tenant: str) -> Caller:
    """What the gate found; checked again here when the gate did not run (never trust a missing check)."""
    caller = getattr(request.state, "ingest_caller", None)
    if isinstance(caller, Caller):
        return caller
    return webhooks.authenticate(get_app(request), provider, tenant, request.headers.get("authorization", ""),
                                 request.query_params.get("key"))


async def _form(request: Request) -> dict[str, object]:
    limit = get_app(request).settings.http_max_upload_bytes
    form = await request.form(max_files=20, max_fields=200, max_part_size=limit)
    values: dict[str, object] = {}
    for name, value in form.multi_items():
        if name in values:
            continue
        values[name] = await value.read() if isinstance(value, UploadFile) else value
    return values


async def _payload(request: Request, caller: Caller) -> Payload:
    if caller.provider == "postmark":
        try:
            return webhooks.postmark_payload(await request.json())
        except ValueError:
            raise WebhookRefused(400, "postmark webhook: the body is not JSON") from None
    form = await _form(request)
    if caller.provider == "mailgun":
        fields = [form.get(name) for name in ("timestamp", "token", "signature")]
        webhooks.verify_mailgun(caller, *(f if isinstance(f, str) else "" for f in fields))
        return webhooks.mailgun_payload(form)
    return webhooks.sendgrid_payload(form)


def _store(app: App, caller: Caller, payload: Payload) -> list[int]:
    """Deliver to the URL's tenant only: its addresses among the recipients, else its inbox."""
    rcpts = tenant_rcpts(app, payload.recipients, only_tenant=caller.tenant_id) \
        or {caller.tenant_id: (inbox_of(app, caller.tenant_id),)}
    item = item_for(payload.raw, source=f"webhook:{caller.provider}", tenant_rcpts=rcpts,
                    peer=f"webhook:{caller.provider}", mail_from=payload.sender)
    return store(app, [item])[0]


@router.post("/{provider}/{tenant}", summary="Inbound mail from a provider's webhook",
             responses={401: {"description": "not the tenant's provider"}, 413: {"description": "too large"},
                        503: {"description": "not stored; the provider should retry"}})
@takes_upload
async def ingest(request: Request, provider: Annotated[str, Path(max_length=16)],
                 tenant: Annotated[str, Path(max_length=64)]) -> dict:
    """Store the raw message; 200 means it is durable."""
    app = get_app(request)
    try:
        caller = caller_of(request, provider, tenant)
        payload = await _payload(request, caller)
    except WebhookRefused as exc:
        raise HTTPException(exc.status, str(exc)) from None
    if len(payload.raw) > app.settings.max_message_size:
        raise HTTPException(413, f"message larger than {app.settings.max_message_size} bytes")
    try:
        ids = await run_in_threadpool(_store, app, caller, payload)
    except Exception as exc:
        log.error("webhook %s for %s: message not stored, provider will retry: %s", provider, tenant, exc)
        raise HTTPException(503, "message not stored, retry later") from None
    hand_on(request.app.state.dispatch, ids)
    return {"stored": ids}
