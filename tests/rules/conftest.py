"""Helpers for rules tests: rule sets from inline YAML, decisions in one call."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from postroom.rules import RoutingDecision, RuleInput, Ruleset, evaluate, parse_ruleset

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def ruleset(yaml_text: str, filename: str = "t.yaml") -> Ruleset:
    return parse_ruleset(textwrap.dedent(yaml_text), filename)


def decide(yaml_text: str, explain: bool = False, **fields: Any) -> RoutingDecision:
    return evaluate(RuleInput(**fields), ruleset(yaml_text), explain=explain)
