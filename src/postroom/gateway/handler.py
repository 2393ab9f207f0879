"""The gateway's aiosmtpd handler: refuse what is not ours at RCPT, store durably at DATA.

An optional ``screen`` (the tenants' reject rules, see gateway/screen.py) may
refuse a message at the end of DATA, before anything is stored.

The handler answers 250 only after ``intake`` has committed the raw bytes and
the inbound rows; any storage error becomes 451 so the sending MTA retries.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime

from postroom import metrics
from postroom.addresses import TenantDirectory
from postroom.gateway.addresses import Recipient, Refusal, classify
from postroom.gateway.protocol import SMTP, Envelope, Session
from postroom.gateway.ratelimit import RateLimits
from postroom.model import Envelope as MailEnvelope
from postroom.storage.intake import IntakeItem

log = logging.getLogger(__name__)

OK_MAIL = "250 2.1.0 Sender OK"
OK_RCPT = "250 2.1.5 Recipient OK"
TOO_MANY_RCPTS = "452 4.5.3 Too many recipients"
STORE_FAILED = "451 4.3.0 Temporary failure storing the message, please try again later"
DIRECTORY_FAILED = "451 4.3.0 Temporary lookup failure, please try again later"
BAD_SENDER = "553 5.1.7 Sender address contains control characters"
DISPATCH_THREADS = 4  # a hanging broker call holds one; the next batches go on in the others
CLASSIFIED_MAX = 10_000  # recipients remembered per directory snapshot (bounded: RCPTs are client-chosen)
_CONTROL = re.compile("[\x00-\x1f\x7f]")


class GatewayHandler:
    """Policy for one gateway: which recipients are ours and where accepted mail goes."""

    def __init__(
        self,
        directory: Callable[[], TenantDirectory],
        submit: Callable[[IntakeItem], Future[list[int]] | asyncio.Future[list[int]]],
        dispatch: Callable[[Iterable[int]], None],
        *,
        max_recipients: int = 100,
        limits: RateLimits | None = None,
        screen: Callable[[IntakeItem], Awaitable[str | None]] | None = None,
    ) -> None:
        self.directory = directory
        self.submit = submit
        self.dispatch = dispatch
        self.max_recipients = max_recipients
        self.limits = limits or RateLimits.unlimited()
        self.screen = screen
        self._classified: dict[str, Recipient | Refusal] = {}
        self._classified_in: TenantDirectory | None = None
        self._undispatched: list[int] = []
        self._dispatcher = ThreadPoolExecutor(DISPATCH_THREADS, thread_name_prefix="postroom-dispatch")

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        """Charge the client IP one token per transaction; the sender pays only for accepted mail (see ratelimit)."""
        if _CONTROL.search(address):
            return BAD_SENDER
        refusal = self.limits.admit(_peer_ip(session), address) if self.limits.enabled else None
        if refusal is not None:
            log.warning("rate limited MAIL FROM %r from %s", address, _peer_ip(session))
            metrics.REFUSED.labels("rate_limited").inc()
            return refusal  # a 421 also ends the session (GatewaySMTP.push)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return OK_MAIL

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= self.max_recipients:
            metrics.REFUSED.labels("too_many_recipients").inc()
            return TOO_MANY_RCPTS
        try:
            result = self._classify(address)
        except Exception as exc:
            log.error("tenant directory unavailable: %s", exc)
            metrics.REFUSED.labels("directory_failed").inc()
            return DIRECTORY_FAILED
        if isinstance(result, Refusal):
            log.info("refused RCPT %r from %s: %s", address, session.peer, result.name)
            metrics.REFUSED.labels(result.name.lower()).inc()
            return result.value
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.append(rcpt_options)
        recipients: list[Recipient] = getattr(envelope, "postroom_recipients", [])
        recipients.append(result)
        envelope.postroom_recipients = recipients  # type: ignore[attr-defined]
        return OK_RCPT

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        metrics.RECEIVED.inc()
        by_tenant: dict[int, tuple[str, ...]] = {}
        for rcpt in getattr(envelope, "postroom_recipients", []):
            by_tenant[rcpt.tenant_id] = (*by_tenant.get(rcpt.tenant_id, ()), rcpt.address)
        peer = _peer_ip(session)
        item = IntakeItem(
            raw=raw,
            envelope=MailEnvelope(
                mail_from=envelope.mail_from or "", rcpt_tos=tuple(envelope.rcpt_tos), peer=peer,
                helo=_printable(session.host_name or ""), received_at=datetime.now(UTC),
            ),
            tenant_rcpts=by_tenant,
        )
        if self.screen is not None:
            try:
                refusal = await self.screen(item)
            except Exception:  # a rules problem must never lose or refuse mail: the pipeline decides then
                log.exception("DATA-time rules check failed; accepting")
                refusal = None
            if refusal is not None:
                metrics.REFUSED.labels("rules_rejected").inc()
                return refusal
        limited = self.limits.charge(peer, item.envelope.mail_from)
        if limited is not None:
            log.warning("rate limited message from %r from %s", item.envelope.mail_from, peer)
            metrics.REFUSED.labels("rate_limited").inc()
            return limited
        try:
            with metrics.INTAKE_SECONDS.time():
                ids = await asyncio.wrap_future(self.submit(item))
        except Exception as exc:
            log.error("could not store message from %s: %s", peer, exc)
            metrics.REFUSED.labels("store_failed").inc()
            return STORE_FAILED
        metrics.ACCEPTED.inc()
        self._dispatch_soon(ids)
        return f"250 2.0.0 Ok: queued as {','.join(map(str, ids))}"

    def _classify(self, address: str) -> Recipient | Refusal:
        """``classify`` against the current directory, remembered until the directory is reloaded."""
        directory = self.directory()
        if directory is not self._classified_in:
            self._classified, self._classified_in = {}, directory
        result = self._classified.get(address)
        if result is None:
            if len(self._classified) >= CLASSIFIED_MAX:
                self._classified.clear()
            result = self._classified[address] = classify(address, directory)
        return result

    def _dispatch_soon(self, ids: list[int]) -> None:
        """Collect the ids accepted in this event loop turn and dispatch them together, off the event loop.

        Off the loop because a broker that hangs must not stall SMTP sessions
        (the row is already the record); the messages of one group commit are
        acknowledged in the same turn, so they share one thread hand-off. Not
        awaited (no ``run_in_executor``): nothing waits for the result, and its
        completion would only wake the event loop once more per batch.
        """
        if not self._undispatched:
            asyncio.get_running_loop().call_soon(self._dispatch_collected)
        self._undispatched.extend(ids)

    def _dispatch_collected(self) -> None:
        ids, self._undispatched = self._undispatched, []
        self._dispatcher.submit(self._dispatch, ids)

    def close(self) -> None:
        """Wait for dispatches under way, so the broker is not closed under them."""
        self._dispatcher.shutdown(wait=True)

    def _dispatch(self, ids: list[int]) -> None:
        try:
            self.dispatch(ids)
        except Exception:  # the rows are stored: the pipeline's sweeper picks them up later
            log.exception("could not dispatch inbound %s", ids)


def _peer_ip(session: Session) -> str:
    return session.peer[0] if isinstance(session.peer, tuple) else str(session.peer or "")


def _printable(text: str) -> str:
    """HELO names are client-chosen: drop control characters (NUL cannot even be stored in PostgreSQL text)."""
    return _CONTROL.sub("", text)
