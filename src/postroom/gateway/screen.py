"""The gateway's end-of-DATA rules screen: refuse mail that every addressed tenant's rules reject for sure.

Whether a decision is final at DATA time (no threading fact could change it)
is the rules stage's to say (rules/routing.py); this module only runs it
against an intake item inside the SMTP transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from postroom import parsing
from postroom.addresses import REPLY_PREFIX, TenantDirectory
from postroom.model import Envelope
from postroom.rules.engine import evaluate
from postroom.rules.input import RuleInput
from postroom.rules.model import Ruleset
from postroom.rules.routing import final_at_data, plan, rulebook
from postroom.settings import Settings
from postroom.storage.intake import IntakeItem

log = logging.getLogger(__name__)


class DataScreen:
    """The gateway's end-of-DATA check: refuse when every tenant of the transaction rejects it for sure.

    Tenants without a reject rule cost one ``stat`` of their rules file; the
    message is parsed (in a thread, off the event loop) only when a reject
    rule could apply. One SMTP reply covers all recipients, so a message
    also addressed to a tenant that would take it is accepted, and the
    rejecting tenant's row is marked rejected by the pipeline instead.
    """

    def __init__(self, settings: Settings, directory: Callable[[], TenantDirectory]) -> None:
        self.book = rulebook(settings.resolved_rules_dir)
        self.trusted = settings.trusted_authserv_id_list
        self.directory = directory

    async def check(self, item: IntakeItem) -> str | None:
        """The SMTP reply refusing ``item``, or None to accept it."""
        if not item.tenant_rcpts:
            return None
        loop = asyncio.get_running_loop()
        directory = self.directory()
        candidates: list[tuple[Ruleset, tuple[str, ...]]] = []
        for tenant_id, rcpts in item.tenant_rcpts.items():
            slug = directory.slug_of(tenant_id)
            ruleset = self.book.peek(slug)
            if ruleset is None:
                ruleset = await loop.run_in_executor(None, self.book.for_tenant, slug)
            if not plan(ruleset).rejects:
                return None
            candidates.append((ruleset, rcpts))
        return await loop.run_in_executor(None, self._decide, item, candidates)

    def _decide(self, item: IntakeItem, candidates: list[tuple[Ruleset, tuple[str, ...]]]) -> str | None:
        try:
            parsed = parsing.parse(item.raw, item.envelope.received_at or datetime.now(UTC))
        except Exception as exc:  # unusable mail is the pipeline's to record, never a reason to refuse here
            log.info("DATA-time rules skipped, message does not parse: %s", exc)
            return None
        refusal: str | None = None
        for ruleset, rcpts in candidates:
            reply = any(r.partition("@")[0].lower().startswith(REPLY_PREFIX) for r in rcpts)
            inp = RuleInput.from_parsed(parsed, Envelope(item.envelope.mail_from, rcpts), is_reply=reply,
                                        new_conversation=not reply, trusted_authserv_ids=self.trusted)
            decision = evaluate(inp, ruleset)
            if decision.disposition != "reject" or decision.reject is None or not final_at_data(decision, ruleset):
                return None
            refusal = refusal or str(decision.reject)
            log.info("refused at DATA by rules %s of %s: %s", ", ".join(decision.fired), ruleset.source,
                     decision.reject)
        return refusal
