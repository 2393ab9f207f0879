"""Rules in the running service: one RuleBook per rules directory, when a decision is final, decision summaries.

The pipeline evaluates every message after threading (flow.rules_stage). The
gateway may refuse a message at the end of DATA (gateway/screen.py), so that
the sending MTA bounces it and we never send backscatter, but only when the
answer cannot change later: the rules that decide it must not read threading
facts (``is_reply``, ``new_conversation``, ``contact``), which only the
pipeline knows.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from postroom.model import ConversationUpdate
from postroom.rules.loader import RuleBook
from postroom.rules.model import Assign, RoutingDecision, Rule, Ruleset

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


def new_conversation_update(decision: RoutingDecision) -> ConversationUpdate:
    """How a decision shapes the conversation its message starts: every value it sets (there is none yet)."""
    values = {"category": decision.category, "unit": decision.unit, "status": decision.status,
              "assign": decision.assign}
    return ConversationUpdate(tags=decision.tags, set={key: value for key, value in values.items() if value})


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
