"""Rules in the running service: one RuleBook per rules directory, the DATA-time screen, decision summaries.

The pipeline evaluates every message after threading (flow.rules_stage). The
gateway may refuse a message at the end of DATA, so that the sending MTA
bounces it and we never send backscatter, but only when the answer cannot
change later: the rules that decide it must not read threading facts
(``is_reply``, ``new_conversation``, ``contact``), which only the pipeline knows.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from postroom import parsing
from postroom.addresses import REPLY_PREFIX, TenantDirectory
from postroom.model import Envelope
from postroom.rules.engine import evaluate
from postroom.rules.input import RuleInput
from postroom.rules.loader import RuleBook
from postroom.rules.model import Assign, RoutingDecision, Rule, Ruleset
from postroom.settings import Settings
from postroom.storage.intake import IntakeItem
from postroom.storage.routing import ConversationUpdate

log = logging.getLogger(__name__)

THREADING_FIELDS = frozenset({"is_reply", "new_conversation", "contact"})
REPLY_AWARE_FIELDS = frozenset({"is_reply", "new_conversation"})
_PLAN_CACHE_MAX = 256

_books: dict[Path, RuleBook] = {}
_books_lock = threading.Lock()


def rulebook(rules_dir: Path) -> RuleBook:
    """The process's RuleBook for a directory: its cache and last-good versions are shared by all callers."""
    key = rules_dir.resolve()
    with _books_lock:
        book = _books.get(key)
        if book is None:
            book = _books[key] = RuleBook(key)
        return book


def uses_threading(rule: Rule) -> bool:
    return not rule.condition.fields.isdisjoint(THREADING_FIELDS)


@dataclass(frozen=True)
class Plan:
    """What the gateway needs to know about a rule set, computed once per loaded version.

    ``first_dependent`` is the position (in ``Ruleset.active``) of the first
    rule that reads threading facts; a DATA-time evaluation is final only if
    it stopped before that rule, or there is no such rule.
    """

    rejects: bool
    first_dependent: int
    positions: dict[str, int]


_plans: dict[int, tuple[Ruleset, Plan]] = {}
_plans_lock = threading.Lock()


def plan(ruleset: Ruleset) -> Plan:
    cached = _plans.get(id(ruleset))
    if cached is not None and cached[0] is ruleset:
        return cached[1]
    active = [rule for _, rule in ruleset.active]
    result = Plan(
        rejects=any(a.kind == "reject" for rule in active for a in rule.actions),
        first_dependent=next((i for i, rule in enumerate(active) if uses_threading(rule)), len(active)),
        positions={rule.name: i for i, rule in enumerate(active)},
    )
    with _plans_lock:
        if len(_plans) >= _PLAN_CACHE_MAX:
            _plans.clear()
        _plans[id(ruleset)] = (ruleset, result)
    return result


def final_at_data(decision: RoutingDecision, ruleset: Ruleset) -> bool:
    """Whether threading facts could not have changed this decision (and no regex timed out)."""
    if decision.warnings:
        return False
    p = plan(ruleset)
    if decision.stopped_by is not None:
        return p.positions[decision.stopped_by] < p.first_dependent
    return p.first_dependent == len(p.positions)


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


def conversation_update(decision: RoutingDecision, ruleset: Ruleset) -> ConversationUpdate:
    """How a decision applies to an existing conversation (a reply).

    Tags always add up. Category, unit, responsible and status of a rule that
    tests ``is_reply``/``new_conversation`` override the conversation's (the
    rule was written with replies in mind), whatever their order; those of
    other rules only fill a category, unit or responsible that is still
    empty, so staff choices stand, and never change the status (the
    lifecycle owns it).
    """
    by_name = {rule.name: rule for rule in ruleset.rules}
    overrides: dict[str, object] = {}
    fills: dict[str, object] = {}
    for action in decision.actions:
        if action.kind in ("category", "unit", "status", "assign"):
            rule = by_name.get(action.rule)
            if rule is not None and not rule.condition.fields.isdisjoint(REPLY_AWARE_FIELDS):
                overrides[action.kind] = action.value
            elif action.kind != "status":
                fills[action.kind] = action.value
    return ConversationUpdate(tags=decision.tags, set=overrides, fill=fills)


def summary(decision: RoutingDecision, ruleset: Ruleset, **extra: object) -> dict:
    """The routing record kept on the inbound row (``postroom queue show``): what fired and what it did."""
    out: dict[str, object] = {"rules": ruleset.source, "fired": list(decision.fired),
                              "disposition": decision.disposition}
    if decision.stopped_by:
        out["stopped_by"] = decision.stopped_by
    if decision.reject is not None:
        out["reject"] = str(decision.reject)
    for name in ("category", "status", "unit", "auto_reply", "auto_reply_suppressed"):
        value = getattr(decision, name)
        if value is not None:
            out[name] = value
    if isinstance(decision.assign, Assign):
        out["assign"] = f"{decision.assign.kind} {decision.assign.value}"
    if decision.tags:
        out["tags"] = list(decision.tags)
    if decision.forward:
        out["forward"] = list(decision.forward)
    if decision.warnings:
        out["warnings"] = list(decision.warnings)
    out.update({k: v for k, v in extra.items() if v not in (None, [], ())})
    return out
