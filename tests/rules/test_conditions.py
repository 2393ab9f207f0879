"""Each predicate and each operator alone, then nested composition."""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any

import pytest

from postroom.rules import RuleInput, evaluate, parse_ruleset


def matches(condition: dict[str, Any], **fields: Any) -> bool:
    """Evaluate one condition (given as data, written as JSON, which is YAML) against an input."""
    text = json.dumps({"rules": [{"name": "r", "when": condition, "then": {"tags": ["hit"]}}]})
    return evaluate(RuleInput(**fields), parse_ruleset(text)).fired == ("r",)


@pytest.mark.parametrize(
    ("condition", "fields", "expected"),
    [
        ({"from": {"is": "Bob@Example.COM"}}, {"from_address": "bob@example.com"}, True),
        ({"from": {"is": "bob@example.com"}}, {"from_address": "alice@example.com"}, False),
        ({"from_name": {"contains": "billing"}}, {"from_name": "Supplier Billing"}, True),
        ({"envelope_from": {"exists": False}}, {"envelope_from": ""}, True),
        ({"envelope_from": {"exists": True}}, {"envelope_from": "a@b.c"}, True),
        ({"reply_to": {"domain": "x.org"}}, {"reply_to": ("a@x.org",)}, True),
        ({"to": {"is": "sales@acme.test"}}, {"to": ("support@acme.test", "sales@acme.test")}, True),
        ({"cc": {"ends_with": "@acme.test"}}, {"cc": ("boss@ACME.test",)}, True),
        ({"cc": {"ends_with": "@acme.test"}}, {"to": ("boss@acme.test",)}, False),
        ({"recipient": {"is": "billing@acme.test"}}, {"recipients": ("billing@acme.test",)}, True),
        ({"recipient": {"is": "billing@acme.test"}}, {"to": ("billing@acme.test",)}, False),
        ({"any_recipient": {"is": "billing@acme.test"}}, {"cc": ("billing@acme.test",)}, True),
        ({"subject": {"starts_with": "re:"}}, {"subject": "RE: hello"}, True),
        ({"subject": {"starts_with": "re:"}}, {"subject": "hello re:"}, False),
        ({"reply_text": {"contains": "cancel"}}, {"reply_text": "Please CANCEL", "body": ""}, True),
        ({"reply_text": {"contains": "cancel"}}, {"reply_text": "thanks", "body": "> cancel"}, False),
        ({"body": {"contains": "cancel"}}, {"reply_text": "thanks", "body": "> cancel"}, True),
        ({"header": {"name": "x-spam-flag", "is": "yes"}}, {"headers": (("X-Spam-Flag", "YES"),)}, True),
        ({"header": {"name": "X-Spam-Flag", "exists": True}}, {"headers": (("Subject", "x"),)}, False),
        ({"header": {"name": "X-Prio", "in": [1, 2]}}, {"headers": (("X-Prio", "3"), ("X-Prio", "2"))}, True),
        ({"attachment_name": {"ends_with": [".exe", ".js"]}}, {"attachment_names": ("a.PDF", "run.EXE")}, True),
        ({"attachment_type": {"starts_with": "image/"}}, {"attachment_types": ("application/pdf",)}, False),
        ({"attachment_count": {"gt": 1}}, {"attachment_count": 2}, True),
        ({"attachment_count": {"is": 0}}, {}, True),
        ({"size": {"gt": "1KB"}}, {"size": 1025}, True),
        ({"size": {"gt": "1KB"}}, {"size": 1024}, False),
        ({"size": {"lt": 100}}, {"size": 99}, True),
        ({"size": {"in": [10, 20]}}, {"size": 20}, True),
        ({"spf": {"is": "pass"}}, {"spf": ("pass",)}, True),
        ({"dkim": {"is": "pass"}}, {"dkim": ("fail", "pass")}, True),
        ({"dmarc": {"in": ["fail", "quarantine"]}}, {"dmarc": ("FAIL",)}, True),
        ({"dmarc": {"exists": False}}, {}, True),
        ({"language": {"is": "nl"}}, {"language": "NL"}, True),
        ({"language": {"exists": True}}, {"language": None}, False),
        ({"is_forward": True}, {"is_forward": True}, True),
        ({"is_forward": False}, {"is_forward": True}, False),
        ({"is_auto_reply": True}, {"is_auto_reply": True}, True),
        ({"is_bounce": True}, {"is_bounce": False}, False),
        ({"is_mailing_list": True}, {"is_mailing_list": True}, True),
        ({"is_reply": True}, {"is_reply": True}, True),
        ({"new_conversation": False}, {}, False),
        ({"contact": {"attribute": "tier", "is": "Gold"}}, {"contact": MappingProxyType({"tier": "gold"})}, True),
        ({"contact": {"attribute": "tier", "exists": True}}, {}, False),
    ],
)
def test_each_predicate(condition: dict[str, Any], fields: dict[str, Any], expected: bool) -> None:
    assert matches(condition, **fields) is expected


@pytest.mark.parametrize(
    ("operator", "operand", "subject", "expected"),
    [
        ("is", "Hello", "hello", True),
        ("is", "Hello", "hello world", False),
        ("contains", "WORLD", "hello world", True),
        ("contains", ["x", "y"], "hello world", False),
        ("starts_with", ["hi", "hel"], "Hello", True),
        ("ends_with", "LD", "world", True),
        ("ends_with", "wor", "world", False),
        ("in", ["a", "hello"], "HELLO", True),
        ("in", ["a", "b"], "hello", False),
        ("matches", r"^\d{4}-\d+$", "2024-0042", True),
        ("matches", "Hello", "hello", False),
        ("matches", "(?i)Hello", "hello", True),
        ("exists", True, "x", True),
        ("exists", True, "", False),
        ("exists", False, "", True),
    ],
)
def test_each_text_operator(operator: str, operand: Any, subject: str, expected: bool) -> None:
    assert matches({"subject": {operator: operand}}, subject=subject) is expected


@pytest.mark.parametrize(
    ("domains", "address", "expected"),
    [
        ("supplier.be", "a@supplier.be", True),
        ("Supplier.BE", "a@mail.supplier.be", True),
        ("supplier.be", "a@notsupplier.be", False),
        ("supplier.be", "a@supplier.be.evil.test", False),
        (["x.test", "supplier.nl"], "a@supplier.nl", True),
        ("@supplier.be", "a@supplier.be", True),
    ],
)
def test_domain_operator(domains: Any, address: str, expected: bool) -> None:
    assert matches({"from": {"domain": domains}}, from_address=address) is expected


@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [("gt", 10, True), ("gt", 11, False), ("lt", 12, True), ("lt", 11, False), ("is", 11, True)],
)
def test_numeric_operators(operator: str, value: int, expected: bool) -> None:
    assert matches({"size": {operator: value}}, size=11) is expected


def test_sizes_with_units() -> None:
    assert matches({"size": {"gt": "10MB"}}, size=10 * 1024 * 1024 + 1)
    assert not matches({"size": {"gt": "10 MB"}}, size=10 * 1024 * 1024)
    assert matches({"size": {"lt": "1.5k"}}, size=1500)


def test_composition_all_any_not_nested() -> None:
    condition = {
        "all": [
            {"any": [{"from": {"domain": "a.test"}}, {"from": {"domain": "b.test"}}]},
            {"not": {"subject": {"contains": "newsletter"}}},
            {"not": {"any": [{"is_auto_reply": True}, {"is_bounce": True}]}},
        ]
    }
    assert matches(condition, from_address="x@b.test", subject="Order")
    assert not matches(condition, from_address="x@c.test", subject="Order")
    assert not matches(condition, from_address="x@a.test", subject="Our Newsletter")
    assert not matches(condition, from_address="x@a.test", subject="Order", is_bounce=True)
    assert matches({"not": {"not": {"is_reply": True}}}, is_reply=True)
    assert matches({"any": [{"all": [{"is_reply": True}, {"size": {"gt": 5}}]}, {"is_forward": True}]},
                   is_forward=True)


def test_multi_valued_fields_match_if_any_value_does() -> None:
    assert matches({"to": {"domain": "acme.test"}}, to=("x@other.test", "y@acme.test"))
    assert not matches({"not": {"to": {"domain": "acme.test"}}}, to=("x@other.test", "y@acme.test"))
