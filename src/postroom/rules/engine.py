"""Evaluate a rule set against one message: file order, every match applies, ``stop`` ends it."""

from __future__ import annotations

from postroom.rules import actions
from postroom.rules.conditions import Facts
from postroom.rules.input import RuleInput
from postroom.rules.model import RoutingDecision, Rule, Ruleset, RuleTrace

REGEX_TIMEOUT = 0.02
REGEX_BUDGET = 0.1


def evaluate(
    inp: RuleInput,
    ruleset: Ruleset,
    *,
    explain: bool = False,
    regex_timeout: float = REGEX_TIMEOUT,
    regex_budget: float = REGEX_BUDGET,
) -> RoutingDecision:
    """Run the rules; pure, so ``rules test`` and the pipeline get the same answer.

    ``regex_timeout`` bounds one regex match and ``regex_budget`` all matches
    for this message (seconds); a timed-out match counts as no match and is
    reported in ``warnings``. ``explain`` fills ``trace`` with, per rule,
    whether it matched and which condition decided.
    """
    facts = Facts(inp, regex_budget=regex_budget, regex_timeout=regex_timeout)
    fired: list[Rule] = []
    trace: list[RuleTrace] = []
    if explain:
        _explain(ruleset, facts, fired, trace)
    else:
        for test, rule in ruleset.active:
            if test(facts):
                fired.append(rule)
                if rule.stop:
                    break
    stopped_by = fired[-1].name if fired and fired[-1].stop else None
    applied = tuple(a for rule in fired for a in rule.actions)
    return RoutingDecision(
        **actions.combine(applied),
        fired=tuple(r.name for r in fired),
        stopped_by=stopped_by,
        actions=applied,
        trace=tuple(trace),
        warnings=tuple(facts.warnings),
    )


def _explain(ruleset: Ruleset, facts: Facts, fired: list[Rule], trace: list[RuleTrace]) -> None:
    """The slow path for ``rules test``: same outcome, plus a trace entry for every rule."""
    stopped_by: str | None = None
    for rule in ruleset.rules:
        if stopped_by is not None:
            trace.append(RuleTrace(rule.name, rule.line, None, note=f"not evaluated: stopped by '{stopped_by}'"))
        elif not rule.enabled:
            trace.append(RuleTrace(rule.name, rule.line, None, note="disabled"))
        else:
            matched, decider = rule.condition.explain(facts)
            trace.append(RuleTrace(rule.name, rule.line, matched, decider.text, decider.where))
            if matched:
                fired.append(rule)
                stopped_by = rule.name if rule.stop else None
