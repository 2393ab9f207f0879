"""Evaluation order, ``stop``, override semantics, explain traces and actions."""

from __future__ import annotations

import json
import textwrap
import time
from typing import Any

from postroom.rules import Assign, Reject, RoutingDecision, RuleInput, Ruleset, evaluate, parse_ruleset


def ruleset(yaml_text: str) -> Ruleset:
    return parse_ruleset(textwrap.dedent(yaml_text), "t.yaml")


def decide(yaml_text: str, explain: bool = False, **fields: Any) -> RoutingDecision:
    return evaluate(RuleInput(**fields), ruleset(yaml_text), explain=explain)

TWO_CATEGORIES = """
rules:
  - name: first
    when: { subject: { contains: order } }
    then: { category: Sales, tags: [a, shared], assign: { team: sales }, status: open, unit: P-1 }
  - name: second
    when: { subject: { contains: urgent } }
    then: { category: Escalations, tags: [shared, b], assign: { user: Lead@Acme.test }, status: in_progress }
  - name: third
    then: { tags: [c] }
"""


def test_every_matching_rule_applies_in_file_order_later_overrides() -> None:
    d = decide(TWO_CATEGORIES, subject="Urgent order")
    assert d.fired == ("first", "second", "third")
    assert d.category == "Escalations"
    assert d.assign == Assign("user", "lead@acme.test")
    assert d.status == "in_progress"
    assert d.unit == "P-1"
    assert d.tags == ("a", "shared", "b", "c")
    assert [a.rule for a in d.actions if a.kind == "category"] == ["first", "second"]


def test_non_matching_rules_do_not_apply() -> None:
    d = decide(TWO_CATEGORIES, subject="order 12")
    assert d.fired == ("first", "third")
    assert (d.category, d.assign) == ("Sales", Assign("team", "sales"))


def test_stop_ends_evaluation() -> None:
    rules = """
    rules:
      - name: a
        when: { from: { domain: vip.test } }
        then: { tags: [vip], stop: true }
      - name: b
        then: { tags: [everyone], category: General }
    """
    d = decide(rules, from_address="x@vip.test")
    assert (d.fired, d.tags, d.category, d.stopped_by) == (("a",), ("vip",), None, "a")
    d = decide(rules, from_address="x@other.test")
    assert (d.fired, d.tags, d.category, d.stopped_by) == (("b",), ("everyone",), "General", None)


def test_stop_on_a_non_matching_rule_does_nothing() -> None:
    d = decide("""
    rules:
      - name: a
        when: { is_bounce: true }
        then: { stop: true }
      - name: b
        then: { category: X }
    """)
    assert d.fired == ("b",)


def test_reject_and_discard_share_the_disposition() -> None:
    rules = """
    rules:
      - name: discard lists
        when: { is_mailing_list: true }
        then: { discard: true }
      - name: reject old domain
        when: { from: { domain: old.test } }
        then: { reject: "Write to new.test please" }
      - name: forward
        then: { forward: [Audit@Acme.test, audit@acme.test] }
    """
    d = decide(rules, is_mailing_list=True)
    assert (d.disposition, d.reject, d.forward) == ("discard", None, ("audit@acme.test",))
    d = decide(rules, is_mailing_list=True, from_address="a@old.test")
    assert d.disposition == "reject"
    assert d.reject == Reject(550, "5.7.1", "Write to new.test please")
    assert str(d.reject) == "550 5.7.1 Write to new.test please"
    d = decide("""
    rules:
      - name: r
        then: { reject: { code: 554, enhanced: 5.7.0, text: Refused } }
      - name: d
        then: { discard: true }
    """)
    assert (d.disposition, d.reject) == ("discard", None)


def test_auto_reply_action_and_disabled_rules() -> None:
    d = decide("""
    rules:
      - name: off
        enabled: false
        then: { category: Never }
      - name: ack
        description: Confirm receipt of new questions
        when: { new_conversation: true }
        then: { auto_reply: acknowledgement }
    """, explain=True)
    assert (d.auto_reply, d.category, d.fired) == ("acknowledgement", None, ("ack",))
    assert d.trace[0].matched is None and d.trace[0].note == "disabled"


def test_explain_reports_the_deciding_condition() -> None:
    rules = """
    rules:
      - name: invoices
        when:
          all:
            - from: { domain: [supplier.be] }
            - subject: { matches: "(?i)invoice" }
        then: { category: Finance, stop: true }
      - name: not bounces
        when: { not: { is_bounce: true } }
        then: { tags: [human] }
      - name: any
        when: { any: [ { is_reply: true }, { size: { gt: 100 } } ] }
        then: { tags: [x] }
    """
    d = decide(rules, explain=True, from_address="a@supplier.be", subject="Hello")
    inv, nb, any_ = d.trace
    assert (inv.matched, inv.decided_by, inv.decided_at) == (False, 'subject matches "(?i)invoice"', "7:31")
    assert (nb.matched, nb.decided_by, nb.decided_at) == (True, "not (is_bounce is true)", "10:11")
    assert (any_.matched, any_.decided_by, any_.decided_at) == (False, "none of 2 conditions matched (any)", "13:11")
    d = decide(rules, explain=True, from_address="a@supplier.be", subject="Invoice 3", size=200)
    assert (d.trace[0].matched, d.trace[0].decided_by, d.trace[0].line) == (True, "all 2 conditions matched", 3)
    assert d.trace[1].matched is None and d.trace[1].note == "not evaluated: stopped by 'invoices'"
    d = decide(rules, explain=True, from_address="a@x.test", size=200)
    assert (d.trace[2].matched, d.trace[2].decided_by, d.trace[2].decided_at) == (True, "size gt 100", "13:54")


def test_explain_and_fast_path_agree() -> None:
    rs = ruleset(TWO_CATEGORIES)
    for subject in ("", "order", "urgent", "urgent order"):
        inp = RuleInput(subject=subject)
        fast, slow = evaluate(inp, rs), evaluate(inp, rs, explain=True)
        assert fast.fired == slow.fired and fast.tags == slow.tags
        assert fast.trace == ()


def test_regex_time_bound() -> None:
    """A catastrophic pattern gives up within its bound and counts as no match."""
    d = decide("""
    rules:
      - name: evil
        when: { body: { matches: "^(a|aa)+$" } }
        then: { tags: [evil] }
      - name: after
        then: { tags: [after] }
    """, body="a" * 60 + "b")
    assert d.fired == ("after",)
    assert len(d.warnings) == 1 and "regex timed out" in d.warnings[0] and d.warnings[0].startswith("4:30:")


def test_regex_budget_bounds_the_whole_message() -> None:
    rules = "rules:\n" + "".join(
        f"  - name: evil {i}\n    when: {{ body: {{ matches: '^(a|aa)+$' }} }}\n    then: {{ tags: [t] }}\n"
        for i in range(20)
    )
    start = time.monotonic()
    d = evaluate(RuleInput(body="a" * 60 + "b"), ruleset(rules), regex_timeout=0.02, regex_budget=0.06)
    assert time.monotonic() - start < 0.5
    assert d.fired == () and len(d.warnings) == 20
    assert any("budget" in w for w in d.warnings)


def test_500_rules_stay_fast() -> None:
    """A loose guard against accidental slow paths; bench/rules.py gives the real figures."""
    rules = [
        {"name": f"r{i}", "when": {"all": [{"from": {"domain": f"d{i}.test"}}, {"subject": {"matches": f"x{i}y"}}]}
         if i % 2 else {"any": [{"subject": {"contains": f"w{i}"}}, {"header": {"name": "X-A", "is": str(i)}}]},
         "then": {"tags": [f"t{i}"]}}
        for i in range(500)
    ]
    rs = parse_ruleset(json.dumps({"rules": rules}))
    inp = RuleInput(from_address="a@d1.test", subject="hello world " * 20, headers=(("X-A", "none"),))
    evaluate(inp, rs)
    start = time.perf_counter()
    for _ in range(20):
        assert evaluate(inp, rs).fired == ()
    assert (time.perf_counter() - start) / 20 < 0.01
