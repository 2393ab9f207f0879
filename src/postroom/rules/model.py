"""Results of the rules stage: compiled rules and the routing decision.

Frozen dataclasses, like the pipeline's stage contracts, so a decision can be
logged, compared in tests and passed to later stages without copying.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from postroom.rules.conditions import Facts
from postroom.rules.tree import Node
from postroom.statuses import ConversationStatus

Status = ConversationStatus
Disposition = Literal["accept", "reject", "discard"]


@dataclass(frozen=True)
class Assign:
    """Responsible staff: one user (by e-mail, lower-cased) or one team (by name)."""

    kind: Literal["user", "team"]
    value: str


@dataclass(frozen=True)
class Reject:
    """SMTP-style refusal, e.g. ``550 5.7.1 We do not accept invoices here``."""

    code: int
    enhanced: str
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.enhanced} {self.text}"


ActionValue = str | bool | Assign | Reject | tuple[str, ...]


@dataclass(frozen=True)
class Action:
    """One action of one rule, e.g. ``Action("category", "Finance", "Invoices")``; ``at`` is its line:col."""

    kind: str
    value: ActionValue
    rule: str
    at: str = field(default="", compare=False)


@dataclass(frozen=True)
class Rule:
    """A compiled rule; ``line`` is where it starts in the file."""

    name: str
    line: int
    condition: Node
    actions: tuple[Action, ...]
    stop: bool
    enabled: bool = True


@dataclass(frozen=True)
class Ruleset:
    """Rules of one file, in file order.

    ``active`` pairs each enabled rule with its condition's test function,
    computed once so the evaluation loop does no attribute lookups.
    """

    source: str
    rules: tuple[Rule, ...] = ()
    active: tuple[tuple[Callable[[Facts], bool], Rule], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "active", tuple((r.condition.test, r) for r in self.rules if r.enabled))

    def __len__(self) -> int:
        return len(self.rules)


@dataclass(frozen=True)
class RuleTrace:
    """Explain output for one rule: ``matched`` is None when it was not evaluated."""

    name: str
    line: int
    matched: bool | None
    decided_by: str = ""
    decided_at: str = ""
    note: str = ""


@dataclass(frozen=True)
class RoutingDecision:
    """What the rules want done with a message.

    Single-valued fields hold the last value set by a fired rule; tags and
    forwards accumulate. ``actions`` lists every applied action in order so
    callers can tell which rule set what.
    """

    disposition: Disposition = "accept"
    reject: Reject | None = None
    category: str | None = None
    assign: Assign | None = None
    status: Status | None = None
    tags: tuple[str, ...] = ()
    unit: str | None = None
    auto_reply: str | None = None
    forward: tuple[str, ...] = ()
    fired: tuple[str, ...] = ()
    stopped_by: str | None = None
    actions: tuple[Action, ...] = ()
    trace: tuple[RuleTrace, ...] = ()
    warnings: tuple[str, ...] = ()
    auto_reply_suppressed: str | None = None
