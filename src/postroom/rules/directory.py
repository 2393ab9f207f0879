"""Rules against the tenant's directory: users, teams and templates a rule names must exist.

A rules file is valid YAML long before it is right for a tenant: ``assign:
{team: finance}`` means nothing where no team is called finance. ``problems``
says so with the file:line:col of the name when an admin checks or uploads a
file; at run time ``vet`` drops such an action from the decision and says
why in its warnings, which the routing record, the log and ``/metrics`` show.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Protocol

from postroom.rules.model import Action, Assign, RoutingDecision, Ruleset


class Directory(Protocol):
    """What one tenant has that a rule may name."""

    tenant: str

    def has_user(self, email: str) -> bool:
        """An active staff member with this (lower-cased) address."""
        ...

    def has_team(self, name: str) -> bool: ...

    def has_template(self, name: str) -> bool:
        """A template a rule's auto-reply can use (built in, or the tenant's own)."""
        ...


def _missing(action: Action, directory: Directory) -> str | None:
    """Why the action names something the tenant does not have, else None."""
    value = action.value
    if action.kind == "assign" and isinstance(value, Assign):
        if value.kind == "user" and not directory.has_user(value.value):
            return (f"user {value.value} is not an active staff member of tenant {directory.tenant} "
                    f"(add them with: postroom user add {directory.tenant} --email {value.value} --name NAME)")
        if value.kind == "team" and not directory.has_team(value.value):
            return (f"team {value.value!r} does not exist in tenant {directory.tenant} "
                    f"(create it with: postroom team add {directory.tenant} {value.value!r})")
    if action.kind == "auto_reply" and isinstance(value, str) and not directory.has_template(value):
        return (f"template {value!r} does not exist for tenant {directory.tenant} "
                f"(add {value}.txt.j2 to its template folder)")
    return None


def _unknown(actions: tuple[Action, ...], directory: Directory) -> Iterator[tuple[Action, str]]:
    for action in actions:
        why = _missing(action, directory)
        if why is not None:
            yield action, why


def _position(action: Action, line: int) -> tuple[int, int]:
    found = action.at.split(":") if action.at else ()
    return (int(found[0]), int(found[1])) if len(found) == 2 else (line, 0)


def problems(ruleset: Ruleset, directory: Directory) -> list[str]:
    """``file:line:col: rule 'X': …`` for every name in the file the tenant does not have, in file order."""
    found = [(_position(action, rule.line), rule.name, why)
             for rule in ruleset.rules for action, why in _unknown(rule.actions, directory)]
    return [f"{ruleset.source}:{line}:{col}: rule {name!r}: {why}" for (line, col), name, why in sorted(found)]


def vet(decision: RoutingDecision, directory: Directory) -> RoutingDecision:
    """The decision without actions naming what the tenant lacks; each skipped action becomes a warning."""
    skipped = list(_unknown(decision.actions, directory))
    if not skipped:
        return decision
    dropped = {id(action) for action, _ in skipped}
    kept = tuple(a for a in decision.actions if id(a) not in dropped)
    changes: dict[str, object] = {"actions": kept, "warnings": (*decision.warnings, *(
        f"rule {action.rule!r}: {action.kind} skipped: {why}" for action, why in skipped))}
    for kind in ("assign", "auto_reply"):
        if any(a.kind == kind for a, _ in skipped):
            changes[kind] = next((a.value for a in reversed(kept) if a.kind == kind), None)
    return dataclasses.replace(decision, **changes)  # type: ignore[arg-type]
