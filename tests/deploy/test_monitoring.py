"""deploy/grafana/postroom.json and deploy/prometheus/alerts.yml name only metrics a running postroom exposes.

The service is the real one (SMTP, workers, HTTP); one mail goes through it
so the database gauges have rows. Metric names are parsed out of every PromQL
expression (labels, strings, durations, groupings and functions removed), so
a renamed or misspelt metric fails here instead of silently drawing nothing.
The rules file is checked by promtool when installed (Debian's prometheus
package), and always against the structure Prometheus expects.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from postroom.service import Service
from postroom.testing import make_eml, wait_until

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana/postroom.json"
ALERTS = DEPLOY / "prometheus/alerts.yml"
PROMETHEUS_OWN = {"up"}  # series Prometheus itself writes for every scrape target

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NUMBERS = re.compile(r"(?<![A-Za-z0-9_:])\d[\w.]*")  # 15, 0.95, 30m, 1h
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = {"and", "or", "unless", "offset", "bool", "by", "without", "on", "ignoring", "group_left",
             "group_right", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords, labels or numbers."""
    bare = _RANGES.sub(" ", _MATCHERS.sub(" ", _STRINGS.sub(" ", expr.replace("$__rate_interval", "5m"))))
    bare = _NUMBERS.sub(" ", _GROUPING.sub(" ", bare))
    names = set()
    for found in _IDENT.finditer(bare):
        rest = bare[found.end():].lstrip()
        if found.group().lower() not in _KEYWORDS and not rest.startswith("("):
            names.add(found.group())
    return names


def test_metric_names_parser() -> None:
    assert metric_names('sum by (le, stage) (rate(a_bucket{job="$job", x=~"b|c"}[5m])) > 15 * 60') == {"a_bucket"}
    assert metric_names("(sum(x{s='p'}) or vector(0)) > (sum(y offset 30m) or vector(0)) and on (i) up") == \
        {"x", "y", "up"}


def exposed_names(text: str) -> set[str]:
    """Every series name a scrape can contain: samples, plus each declared family's suffixes (a labelled
    counter has no sample before its first event, yet its family is declared)."""
    names: set[str] = set()
    suffixes = {"counter": ("_total", "_created", ""), "histogram": ("_bucket", "_sum", "_count", "_created"),
                "summary": ("_sum", "_count", "_created", ""), "gauge": ("",), "untyped": ("",)}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            base = name.removesuffix("_total") if kind == "counter" else name
            names |= {base + suffix for suffix in suffixes.get(kind, ("",))}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    # a variable's label_values(SERIES, LABEL): only SERIES is PromQL
    exprs += [re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", var["query"])
              for var in dashboard["templating"]["list"] if var["type"] == "query"]
    return exprs


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


@pytest.fixture
def scraped(service: Service, smtp: Callable) -> set[str]:
    client = smtp()
    client.sendmail("jean@example.com", ["inbox@acme.mail.test"], make_eml())

    def scrape_once_processed() -> str | None:
        with urllib.request.urlopen(f"{service.http_url}/metrics", timeout=10) as response:
            body = response.read().decode()
        return body if 'status="done"' in body else None

    return exposed_names(wait_until(scrape_once_processed, timeout=30))


def test_every_metric_the_dashboard_and_alerts_name_is_exposed(scraped: set[str]) -> None:
    named = {name: source for source, exprs in (("dashboard", dashboard_exprs()),
                                                ("alerts", [rule["expr"] for rule in alert_rules()]))
             for expr in exprs for name in metric_names(expr.replace("$job", "postroom"))}
    assert set(named) >= {"postroom_queue_depth", "postroom_messages_refused_total", "postroom_stage_seconds_bucket",
                          "postroom_outbound_messages", "postroom_smtp_sessions_total",
                          "postroom_messages_failed_total"}
    missing = {name: source for name, source in named.items() if name not in scraped | PROMETHEUS_OWN}
    assert not missing, f"named but not in /metrics: {missing}"


def test_dashboard_structure() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["panels"]
    assert {var["name"] for var in dashboard["templating"]["list"]} >= {"datasource", "job"}
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}" and set(panel["gridPos"]) == {"h", "w", "x", "y"}
        refs = [target["refId"] for target in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]


def test_alert_rules_are_prometheus_rules(tmp_path: Path) -> None:
    document = yaml.safe_load(ALERTS.read_text())
    assert set(document) == {"groups"}
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "rules"} and group["name"] and group["rules"]
        for rule in group["rules"]:
            assert {"alert", "expr", "labels", "annotations"} <= set(rule) <= \
                {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, rule
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"]) and rule["expr"].strip()
            assert rule["labels"]["severity"] in ("warning", "critical")
            assert {"summary", "description"} <= set(rule["annotations"])
            assert "for" not in rule or re.fullmatch(r"\d+[smh]", rule["for"])
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names))
    promtool = shutil.which("promtool")
    if promtool is None:
        return
    done = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text(ALERTS.read_text().replace("> 15 * 60", "> > 15"))
    assert subprocess.run([promtool, "check", "rules", str(broken)], capture_output=True, timeout=60).returncode != 0
