"""Rules files written to hurt: alias bombs, deep nesting, oversized files, regexes that explode or backtrack."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.rules.conftest import finished, write_rules

from postroom.rules import RuleInput, RulesError, evaluate, parse_ruleset, read_ruleset
from postroom.rules.bounds import MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES, MAX_RULES
from postroom.testing import make_eml, wait_until

LAUGHS = "\n".join(
    [' a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f" {b}: &{b} [{','.join([f'*{a}'] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi", strict=True)]
)
BILLION_LAUGHS = f"lol:\n{LAUGHS}\nrules: *i\n"
CATASTROPHIC = """
rules:
  - name: Backtracks forever
    when: { body: { matches: "^(a|aa)+$" } }
    then: { tags: [evil] }
  - name: Everything
    then: { category: General }
"""
CLI = "from postroom.cli import main; main()"
# Runs the CLI as a child of a fresh interpreter and prints the child's peak RSS, so no earlier child of the
# test process can be the maximum; the address-space limit makes a regression fail instead of eating the machine.
MEASURE = """
import resource, subprocess, sys
def limit():
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
done = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=60, preexec_fn=limit)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(done.returncode, usage.ru_maxrss, usage.ru_utime + usage.ru_stime)
print(done.stderr, file=sys.stderr, end="")
"""


def cli_peak(*args: str) -> tuple[int, int, str, float]:
    """Exit code, peak RSS in KiB, stderr and CPU seconds of ``postroom ARGS`` (CPU, not wall: the machine is
    shared)."""
    done = subprocess.run([sys.executable, "-c", MEASURE, sys.executable, "-c", CLI, *args],
                          capture_output=True, text=True, timeout=120)
    code, peak, cpu = done.stdout.split()
    return int(code), int(peak), done.stderr, float(cpu)


def refused(text: str) -> list[str]:
    with pytest.raises(RulesError) as caught:
        parse_ruleset(text, "t.yaml")
    return caught.value.lines


def test_billion_laughs_is_refused_by_rules_check_fast_and_small(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BILLION_LAUGHS)
    small = tmp_path / "small.yaml"
    small.write_text("rules:\n  - name: One\n    then: { category: A }\n")
    code, base_peak, stderr, base_cpu = cli_peak("rules", "check", str(small))
    assert code == 0, stderr
    code, peak, stderr, cpu = cli_peak("rules", "check", str(bomb))
    assert code == 1
    assert stderr.strip() == f"{bomb}:2:5: anchors (&name) and aliases (*name) are not allowed in rules files; " \
                             "write the value out"
    assert cpu < base_cpu + 5, f"rules check took {cpu:.1f} s of CPU ({base_cpu:.1f} s for a small file)"
    assert peak - base_peak < 20 * 1024, f"rules check grew by {(peak - base_peak) // 1024} MB"


def test_aliases_anchors_and_merge_keys_are_refused_with_their_line() -> None:
    alias = "defaults: &d { category: A }\nrules:\n  - name: x\n    then: *d\n"
    assert refused(alias) == ["t.yaml:1:11: anchors (&name) and aliases (*name) are not allowed in rules files; "
                              "write the value out"]
    merge = "rules:\n  - name: x\n    then:\n      <<: { category: A }\n"
    assert refused(merge) == ["t.yaml:4:7: merge keys (<<) are not allowed in rules files; write the keys out"]


def test_size_depth_nodes_and_rule_count_are_bounded(tmp_path: Path) -> None:
    deep = "rules:\n  - name: x\n    then: { tags: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + " }\n"
    assert refused(deep)[0].endswith(f"nested deeper than {MAX_DEPTH} levels")
    nodes = "rules:\n  - name: x\n    then: { tags: [" + ",".join(["t"] * MAX_NODES) + "] }\n"
    assert len(nodes) < MAX_FILE_BYTES
    assert refused(nodes)[0].endswith(f"more than {MAX_NODES} YAML values; rules files are limited to that")
    many = "rules:\n" + "".join(f"  - {{ name: r{i}, then: {{ tags: [t] }} }}\n" for i in range(MAX_RULES + 1))
    assert "at most 1000 rules" in refused(many)[0]
    huge = tmp_path / "huge.yaml"
    huge.write_text("rules: []\n#" + "x" * MAX_FILE_BYTES)
    with pytest.raises(RulesError) as caught:
        read_ruleset(huge)
    assert caught.value.lines == [f"{huge}:1:1: rules file is too large (more than {MAX_FILE_BYTES} bytes)"]
    assert refused("rules: []\n#" + "x" * MAX_FILE_BYTES)[0].startswith("t.yaml:1:1: rules file is too large")


@pytest.mark.parametrize("pattern", ["(?:a{1000}){1000}", "a{4294967294}", "(?x)(?:a{1000} # (\n){1000}",
                                     "(?:x{9999}|y{9999}){2}"])
def test_regexes_that_expand_when_compiled_are_refused(pattern: str) -> None:
    when = f"{{ subject: {{ matches: {json.dumps(pattern)} }} }}"
    text = f"rules:\n  - name: x\n    when: {when}\n    then: {{ tags: [t] }}\n"
    started = time.monotonic()
    lines = refused(text)
    assert time.monotonic() - started < 1
    assert lines[0].startswith("t.yaml:3:33: invalid regular expression: pattern is too large once its counted")


def test_regexes_of_a_file_are_bounded_together() -> None:
    rule = "  - name: r{i}\n    when: {{ subject: {{ matches: 'x{{9000}}' }} }}\n    then: {{ tags: [t] }}\n"
    assert parse_ruleset("rules:\n" + rule.format(i=0), "t.yaml")
    lines = refused("rules:\n" + "".join(rule.format(i=i) for i in range(12)))
    assert lines[0].startswith("t.yaml:36:33: the regular expressions of this file together are too large")


def test_matches_searches_a_bounded_prefix_of_long_values() -> None:
    rules = parse_ruleset("rules:\n  - name: tail\n    when: { body: { matches: 'needle' } }\n    then: { tags: [t] }\n"
                          "  - name: contains\n    when: { body: { contains: 'needle' } }\n    then: { tags: [c] }\n")
    decision = evaluate(RuleInput(body="x" * 1_000_000 + "needle"), rules)
    assert decision.fired == ("contains",) and decision.warnings == ()


def test_rules_test_cli_reports_a_catastrophic_regex_and_ends(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(CATASTROPHIC)
    message = tmp_path / "m.eml"
    message.write_bytes(make_eml(body="a" * 5000 + "b\n"))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", CLI, "rules", "test", "--json", str(rules), str(message)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 30
    result = json.loads(done.stdout)
    assert result["fired"] == ["Everything"] and result["category"] == "General"
    assert len(result["warnings"]) == 1 and result["warnings"][0].startswith("4:30: body matches")
    assert "treated as no match" in result["warnings"][0]


def test_pipeline_treats_a_catastrophic_regex_as_no_match_and_says_so(routed, send, settings) -> None:
    write_rules(settings, "acme", CATASTROPHIC)
    send(make_eml(subject="Backtrack", body="a" * 5000 + "b\n"))
    (row,) = wait_until(lambda: finished(routed), timeout=30)
    assert row.status == "done"
    assert row.routing["fired"] == ["Everything"] and row.routing["category"] == "General"
    assert len(row.routing["warnings"]) == 1 and "treated as no match" in row.routing["warnings"][0]
