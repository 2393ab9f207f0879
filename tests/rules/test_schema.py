"""Bad rules files: every problem reported as file:line:col with what was expected."""

from __future__ import annotations

import textwrap

import pytest

from postroom.rules import RulesError, parse_ruleset


def errors(text: str) -> list[str]:
    with pytest.raises(RulesError) as info:
        parse_ruleset(textwrap.dedent(text).lstrip("\n"), "acme.yaml")
    return info.value.lines


def test_yaml_syntax_error_has_line_and_column() -> None:
    lines = errors("""
        rules:
          - name: x
            then: { stop: true
          - name: y
        """)
    assert len(lines) == 1
    assert lines[0].startswith("acme.yaml:4:9: YAML syntax error: expected ',' or '}', but got ':'")
    assert "started at 3:11" in lines[0]


def test_tab_indentation_is_a_syntax_error() -> None:
    assert errors("rules:\n\t- name: x\n") == [
        "acme.yaml:2:1: YAML syntax error: found character '\\t' that cannot start any token"
    ]


def test_unknown_key_points_at_the_key_and_suggests() -> None:
    lines = errors("""
        rules:
          - name: Invoices
            when:
              subjct: { contains: invoice }
            then: { category: Finance }
        """)
    assert len(lines) == 1
    assert lines[0].startswith("acme.yaml:4:7: unknown key 'subjct'; did you mean 'subject'?")
    assert "(at rules[0].when.subjct)" in lines[0]


def test_unknown_operator_and_unknown_action() -> None:
    lines = errors("""
        rules:
          - name: Invoices
            when: { from: { domian: supplier.be } }
            then: { categroy: Finance }
        """)
    assert lines[0].startswith("acme.yaml:3:21: unknown key 'domian'; did you mean 'domain'?")
    assert lines[1].startswith("acme.yaml:4:13: unknown key 'categroy'; did you mean 'category'?")


def test_wrong_types_point_at_the_value() -> None:
    lines = errors("""
        rules:
          - name: Big
            enabled: maybe
            when: { size: { gt: lots } }
            then:
              status: done
              tags: { a: 1 }
        """)
    assert lines == [
        "acme.yaml:3:14: expected true or false, got 'maybe' (at rules[0].enabled)",
        "acme.yaml:4:25: expected a whole number (sizes may use KB, MB, GB), got 'lots' (at rules[0].when.size.gt)",
        "acme.yaml:6:15: expected one of 'open', 'awaiting_feedback', 'in_progress' or 'closed', "
        "got 'done' (at rules[0].then.status)",
        "acme.yaml:7:13: expected text (at rules[0].then.tags)",
    ]


def test_yes_is_not_a_boolean() -> None:
    """YAML 1.1 would read ``yes`` as true; rules files use true/false only."""
    assert errors("rules:\n  - name: x\n    when: { is_bounce: yes }\n    then: { stop: true }\n") == [
        "acme.yaml:3:24: expected true or false, got 'yes' (at rules[0].when.is_bounce)"
    ]
    rs = parse_ruleset('rules:\n  - name: x\n    when: { header: { name: X-Spam-Flag, is: YES } }\n'
                       '    then: { stop: true }\n')
    assert len(rs) == 1


def test_bad_regex_points_at_the_pattern() -> None:
    lines = errors("""
        rules:
          - name: Invoices
            when:
              subject: { matches: "factu(ur|re" }
            then: { category: Finance }
        """)
    assert len(lines) == 1
    assert lines[0].startswith("acme.yaml:4:27: invalid regular expression: missing )")


def test_missing_keys_point_at_the_mapping() -> None:
    lines = errors("""
        rules:
          - name: x
            when: { header: { is: x } }
          - when: { is_bounce: true }
        """)
    assert lines == [
        "acme.yaml:2:5: missing required key 'then' (at rules[0])",
        "acme.yaml:3:21: missing required key 'name' (at rules[0].when.header)",
        "acme.yaml:4:5: missing required key 'name' (at rules[1])",
        "acme.yaml:4:5: missing required key 'then' (at rules[1])",
    ]


def test_one_operator_and_one_condition_per_item() -> None:
    lines = errors("""
        rules:
          - name: x
            when:
              all:
                - { subject: { is: a, contains: b } }
                - { is_reply: true, is_forward: true }
                - { subject: {} }
            then: { stop: true }
        """)
    assert lines[0].startswith("acme.yaml:5:22: expected exactly one operator")
    assert lines[0].endswith("found contains, is (at rules[0].when.all[0].subject)")
    assert lines[1].startswith("acme.yaml:6:11: expected exactly one condition per item")
    assert lines[2].startswith("acme.yaml:7:22: expected exactly one operator")


def test_operators_are_checked_against_the_field_kind() -> None:
    lines = errors("""
        rules:
          - name: x
            when: { subject: { domain: acme.test } }
            then: { stop: true }
          - name: y
            when: { size: { contains: "1" } }
            then: { stop: true }
        """)
    assert lines[0].startswith("acme.yaml:3:24: unknown key 'domain'")
    assert lines[1].startswith("acme.yaml:6:21: unknown key 'contains'")


def test_actions_are_validated() -> None:
    lines = errors("""
        rules:
          - name: x
            then:
              assign: { user: bob@acme.test, team: sales }
          - name: y
            then: { assign: { user: bob } }
          - name: z
            then: { reject: { code: 250, text: "no" }, forward: not-an-address }
          - name: w
            then: {}
          - name: v
            then: { reject: go away, discard: true }
        """)
    assert lines == [
        "acme.yaml:4:15: expected exactly one of 'user' (an e-mail address) or 'team' (a team name) "
        "(at rules[0].then.assign)",
        "acme.yaml:6:29: expected an e-mail address, got 'bob' (at rules[1].then.assign.user)",
        "acme.yaml:8:29: expected a number >= 500, got 250 (at rules[2].then.reject.code)",
        "acme.yaml:8:57: expected an e-mail address, got 'not-an-address' (at rules[2].then.forward)",
        "acme.yaml:10:11: expected at least one action (at rules[3].then)",
        "acme.yaml:12:11: a rule cannot both reject and discard (at rules[4].then)",
    ]


def test_duplicate_keys_and_rule_names() -> None:
    assert errors("rules:\n  - name: a\n    name: b\n    then: { stop: true }\n") == [
        "acme.yaml:3:5: duplicate key 'name'"
    ]
    assert errors("rules:\n  - name: a\n    then: { stop: true }\n  - name: a\n    then: { stop: true }\n") == [
        "acme.yaml:4:11: duplicate rule name 'a' (first used by rule 1); names must be unique"
    ]


def test_top_level_shape() -> None:
    assert errors("") == ["acme.yaml:1:1: missing required key 'rules' (at top level)"]
    assert errors("rules: 3\n") == ["acme.yaml:1:8: expected a list, got 3 (at rules)"]
    assert errors("- name: x\n") == ["acme.yaml:1:1: expected a mapping (key: value lines) (at top level)"]
    assert errors("rules: []\nversion: 2\n")[0].startswith("acme.yaml:2:1: unknown key 'version'")


def test_python_tags_are_refused() -> None:
    assert errors("rules: !!python/object:os.system []\n") == [
        "acme.yaml:1:8: unsupported YAML tag tag:yaml.org,2002:python/object:os.system"
    ]
    assert errors("rules: [!!python/name:os.system x]\n")[0].startswith("acme.yaml:1:9: could not determine")
