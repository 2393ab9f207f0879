"""Routing rules: per-tenant YAML that decides where inbound mail goes, and says why.

Wiring for the pipeline::

    ruleset = RuleBook(rules_dir).for_tenant(slug)
    decision = evaluate(RuleInput.from_parsed(parsed, envelope, is_reply=...), ruleset)
    decision = guard_auto_reply(decision, rule_input, already_sent_today)
"""

from __future__ import annotations

from postroom.rules.actions import can_auto_reply, guard_auto_reply
from postroom.rules.compile import parse_ruleset, read_ruleset
from postroom.rules.engine import evaluate
from postroom.rules.errors import RulesError
from postroom.rules.input import RuleInput
from postroom.rules.model import Action, Assign, Reject, RoutingDecision, Rule, Ruleset, RuleTrace

__all__ = [
    "Action",
    "Assign",
    "Reject",
    "RoutingDecision",
    "Rule",
    "RuleInput",
    "RuleTrace",
    "Ruleset",
    "RulesError",
    "can_auto_reply",
    "evaluate",
    "guard_auto_reply",
    "parse_ruleset",
    "read_ruleset",
]
