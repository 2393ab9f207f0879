"""What rules can do, how actions of several rules combine, and the auto-reply guard."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from postroom.rules.input import RuleInput
from postroom.rules.model import Action, Assign, Reject, RoutingDecision

SINGLE_VALUED = ("category", "assign", "status", "unit", "auto_reply")
ACCUMULATING = ("tags", "forward")
_NO_REPLY_LOCALPARTS = ("mailer-daemon", "postmaster", "noreply", "no-reply", "no_reply", "donotreply",
                        "do-not-reply", "bounce", "bounces")
_SUPPRESS_TOKENS = frozenset({"all", "oof", "autoreply"})


def from_then(then: Mapping[str, Any], rule: str) -> tuple[Action, ...]:
    """Turn a validated ``then:`` mapping (YAML keys) into actions, in a fixed order."""
    actions: list[Action] = []
    for kind in ("category", "status", "unit", "auto_reply"):
        if kind in then:
            actions.append(Action(kind, then[kind], rule))
    if "assign" in then:
        (who, value), = then["assign"].items()
        actions.append(Action("assign", Assign(who, value.lower() if who == "user" else value), rule))
    for kind in ACCUMULATING:
        if kind in then:
            actions.append(Action(kind, tuple(v.lower() if kind == "forward" else v for v in then[kind]), rule))
    if "reject" in then:
        r = then["reject"]
        actions.append(Action("reject", Reject(r["code"], r["enhanced"], r["text"]), rule))
    if then.get("discard"):
        actions.append(Action("discard", True, rule))
    if then.get("stop"):
        actions.append(Action("stop", True, rule))
    return tuple(actions)


def combine(actions: Iterable[Action]) -> dict[str, Any]:
    """Fold actions in firing order: last one wins for single values, tags and forwards accumulate.

    Reject and discard share one field (the disposition), so a later rule can
    turn an earlier discard into a reject and vice versa.
    """
    out: dict[str, Any] = {}
    lists: dict[str, dict[str, None]] = {kind: {} for kind in ACCUMULATING}
    for action in actions:
        if action.kind in SINGLE_VALUED:
            out[action.kind] = action.value
        elif action.kind in lists:
            lists[action.kind].update(dict.fromkeys(action.value))  # type: ignore[arg-type]
        elif action.kind == "reject":
            out["disposition"], out["reject"] = "reject", action.value
        elif action.kind == "discard":
            out["disposition"], out["reject"] = "discard", None
    for kind, values in lists.items():
        if values:
            out[kind] = tuple(values)
    return out


def can_auto_reply(inp: RuleInput, already_sent_today: Callable[[str], bool]) -> tuple[bool, str]:
    """Whether an automatic answer to this message is safe, with the reason.

    Follows RFC 3834: never answer null senders, automatic mail, bounces or
    lists, nor our own addresses; and at most one auto-reply per address per
    day, which also breaks loops with responders that ignore Auto-Submitted.
    ``already_sent_today(address)`` is asked last, since it may hit a database.
    """
    if not inp.envelope_from:
        return False, "null envelope sender (bounce or notification)"
    target = inp.from_address
    if not target:
        return False, "no sender address"
    if inp.is_bounce:
        return False, "message is a bounce"
    if inp.is_auto_reply:
        return False, "message is an automatic reply"
    if inp.is_mailing_list:
        return False, "message came from a mailing list"
    suppress = {t.strip().lower() for v in inp.header_values("x-auto-response-suppress") for t in v.split(",")}
    if suppress & _SUPPRESS_TOKENS:
        return False, "sender asked for no automatic responses (X-Auto-Response-Suppress)"
    local = target.partition("@")[0]
    if local.startswith(_NO_REPLY_LOCALPARTS) or local.endswith(("-request", "-bounces")) or local.startswith(
        "owner-"
    ):
        return False, f"sender {target} is a system address"
    if target in inp.recipients:
        return False, f"sender {target} is one of our own addresses"
    if already_sent_today(target):
        return False, f"already auto-replied to {target} today"
    return True, f"auto-reply to {target}"


def guard_auto_reply(
    decision: RoutingDecision, inp: RuleInput, already_sent_today: Callable[[str], bool]
) -> RoutingDecision:
    """Drop a decision's auto-reply when it is unsafe (or the message is refused), recording why."""
    if decision.auto_reply is None:
        return decision
    if decision.disposition != "accept":
        ok, reason = False, f"message is {decision.disposition}ed"
    else:
        ok, reason = can_auto_reply(inp, already_sent_today)
    return decision if ok else dataclasses.replace(decision, auto_reply=None, auto_reply_suppressed=reason)
