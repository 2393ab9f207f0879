"""Run every reliability and security check and write bench/reliability.md with the figures.

    .venv/bin/python bench/reliability.py                      # 5,000-message crash test, 60 s of atheris
    .venv/bin/python bench/reliability.py --messages 500 --atheris-seconds 10   # a quicker pass

Parts: the crash test (bench/crash.py), atheris for --atheris-seconds, the
hypothesis fuzz tests with their statistics, the hard parser inputs timed, and
the pytest suites for outages, SMTP abuse and security, counted case by case.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
RELIABILITY = ROOT / "tests" / "reliability"
SECURITY = ROOT / "tests" / "security"
MD = ROOT / "bench" / "reliability.md"


def _module(path: Path) -> ModuleType:
    """Import a test-side module by file (tests are not a package; their helpers sit beside them)."""
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    return importlib.import_module(path.stem)


def crash(messages: int, kills: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "crash.json"
        started = time.monotonic()
        result = subprocess.run([sys.executable, str(ROOT / "bench" / "crash.py"), "--messages", str(messages),
                                 "--kills", str(kills), "--json", str(out)], capture_output=True, text=True)
        out_exists = out.exists()
        figures = json.loads(out.read_text()) if out_exists else {}
    figures["exit"] = result.returncode
    figures["last_line"] = (result.stdout.strip().splitlines() or [""])[-1]
    figures["wall"] = round(time.monotonic() - started, 1)
    figures["output"] = result.stdout.strip()
    if result.returncode and not out_exists:
        figures["notes"] = [f"crash.py failed: {result.stderr.strip().splitlines()[-1:]}"]
    return figures


def atheris_run(seconds: int) -> dict:
    """Fuzz for ``seconds`` in total; libFuzzer stops at a crash, so restart until the time is used up."""
    budget = _module(RELIABILITY / "parse_budget.py")
    inputs, runs, found = 0, 0, {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as corpus:
        while (left := seconds - (time.monotonic() - started)) > 2 and runs < 30:
            runs += 1
            result = subprocess.run([sys.executable, str(RELIABILITY / "fuzz_parse_atheris.py"),
                                     f"-max_total_time={int(left)}", "-timeout=10", "-rss_limit_mb=2048",
                                     "-print_final_stats=1", f"-artifact_prefix={tmp}/", f"-seed={runs}",
                                     corpus, str(ROOT / "fixtures" / "emails")],
                                    capture_output=True, text=True)
            executed = re.findall(r"stat::number_of_executed_units:\s*(\d+)", result.stderr) or \
                re.findall(r"#(\d+)\s", result.stderr)[-1:]
            inputs += int(executed[-1]) if executed else 0
        for crash_file in Path(tmp).glob("*"):  # crash inputs only: new corpus entries go to ``corpus``
            raw = crash_file.read_bytes()
            try:
                budget.checked_parse(raw, seconds=10)
                kind = "did not reproduce in-process"
            except Exception as exc:
                kind = f"{type(exc).__name__}: {str(exc)[:80]}"
            found.setdefault(kind, raw[:160].decode("latin-1"))
    return {"seconds": round(time.monotonic() - started, 1), "inputs": inputs, "runs": runs,
            "crashes": sum(1 for _ in found), "kinds": found}


def _pytest(paths: list[str], *extra: str) -> tuple[dict[str, dict[str, int]], str, float]:
    """Run pytest with junit XML; outcome counts per test file."""
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "pytest", *paths, "-q", f"--junitxml={xml}", *extra],
                                capture_output=True, text=True, cwd=ROOT)
        seconds = time.monotonic() - started
        counts: dict[str, dict[str, int]] = {}
        if xml.exists():
            for case in ET.parse(xml).getroot().iter("testcase"):
                file = case.get("classname", "").replace(".", "/").split("tests/")[-1] + ".py"
                kind = "passed"
                for child in case:
                    if child.tag in ("failure", "error"):
                        kind = "failed"
                    elif child.tag == "skipped":
                        kind = "xfailed" if "xfail" in (child.get("type", "") + child.get("message", "")) \
                            else "skipped"
                bucket = counts.setdefault(file or "?", {})
                bucket[kind] = bucket.get(kind, 0) + 1
    return counts, result.stdout, seconds


def hypothesis_stats() -> tuple[int, float, str]:
    _, out, seconds = _pytest([str(RELIABILITY / "test_parser_fuzz.py")], "-k", "arbitrary or broken",
                              "--hypothesis-show-statistics")
    examples = sum(int(n) for n in re.findall(r"(\d+) passing", out))
    failing = sum(int(n) for n in re.findall(r"(\d+) failing", out))
    return examples, seconds, f"{failing} failing"


def hard_cases() -> list[tuple[str, int, float, int, str]]:
    fuzz = _module(RELIABILITY / "test_parser_fuzz.py")
    budget = _module(RELIABILITY / "parse_budget.py")
    rows = []
    for name, (build, seconds, peak_limit) in fuzz.HARD_CASES.items():
        raw = build()
        try:
            timed = budget.checked_parse(raw, seconds=seconds * 2)
            traced = budget.checked_parse(raw, seconds=seconds * 10, measure_memory=True) if peak_limit else None
            outcome = "parsed" if timed.parsed else f"parse_failed ({str(timed.failed)[:50]})"
            rows.append((name, len(raw), timed.seconds, traced.peak_bytes if traced else -1, outcome))
        except Exception as exc:
            rows.append((name, len(raw), -1.0, -1, f"CRASH {type(exc).__name__}: {str(exc)[:60]}"))
    return rows


def trust() -> tuple[list[dict], bool]:
    """The scripted attacker of tests/rules/test_trust_attacks.py, each attack's outcome as the test saw it."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "trust.jsonl"
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests/rules/test_trust_attacks.py"],
                                capture_output=True, text=True, cwd=ROOT,
                                env={**os.environ, "POSTROOM_TRUST_REPORT": str(report)})
        outcomes = [json.loads(line) for line in report.read_text().splitlines()] if report.exists() else []
    return outcomes, result.returncode == 0


def _trust_table(outcomes: list[dict]) -> list[str]:
    lines = ["| tenant policy | attack (sender: a stranger using the customer's display name) | where it landed "
             "| flags | conversation data in mail to the stranger |", "| --- | --- | --- | --- | --- |"]
    for o in outcomes:
        lines.append(f"| {o['mode']} | {o['attack']} | {o['landed']} | {', '.join(o['flags']) or '-'} "
                     f"| {', '.join(o['leaked']) or 'none'} |")
    return lines


TRUST_SUITES = {
    "security/test_tenant_domains.py": "a tenant adds another tenant's domain, the base mail domain or a domain "
                                       "above or below one: refused in one line, the other tenant's mail still "
                                       "lands where it belongs",
    "security/test_sender_limits.py": "320 pipelined MAIL FROM:<victim> + RSET from one IP: that IP is limited, "
                                      "the victim's real mail from another IP still gets 250",
    "security/test_reply_tokens.py": "forged, truncated, replayed and other tenants' reply tokens: never attach",
}


def _trust_suites(counts: dict[str, dict[str, int]]) -> list[str]:
    """The gateway and CLI sides of the trust attacks, from the security suite's own outcome counts."""
    lines = []
    for file, what in TRUST_SUITES.items():
        c = counts.get(file, {})
        verdict = "not run" if not c else ("held" if not c.get("failed") else f"{c['failed']} FAILED")
        lines.append(f"- {what} ({file}: {c.get('passed', 0)} passed, {verdict}).")
    return lines


def _counts_table(counts: dict[str, dict[str, int]]) -> list[str]:
    lines = ["| file | passed | failed | xfailed | skipped |", "| --- | ---: | ---: | ---: | ---: |"]
    for file, c in sorted(counts.items()):
        lines.append(f"| {file} | {c.get('passed', 0)} | {c.get('failed', 0)} | {c.get('xfailed', 0)} "
                     f"| {c.get('skipped', 0)} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--kills", type=int, default=8)
    parser.add_argument("--atheris-seconds", type=int, default=60)
    args = parser.parse_args()
    started = datetime.now(UTC)
    print("crash test …", flush=True)
    crashed = crash(args.messages, args.kills)
    print(crashed["last_line"], flush=True)
    print("atheris …", flush=True)
    fuzzed = atheris_run(args.atheris_seconds)
    print(f"atheris: {fuzzed['inputs']} inputs in {fuzzed['seconds']} s, crashes: {list(fuzzed['kinds'])}", flush=True)
    print("hypothesis and hard cases …", flush=True)
    examples, hyp_seconds, hyp_failing = hypothesis_stats()
    hard = hard_cases()
    print("outage, abuse and security suites …", flush=True)
    suites, _, suite_seconds = _pytest([str(RELIABILITY / "test_outages.py"),
                                        str(RELIABILITY / "test_protocol_abuse.py"), str(SECURITY)])
    print("trust: scripted attacker …", flush=True)
    attacks, trust_ok = trust()
    relay = _module(SECURITY / "test_open_relay.py")
    abuse_cases = sum(c.get("passed", 0) + c.get("failed", 0) + c.get("xfailed", 0) for c in suites.values())
    ok = crashed.get("ok") and fuzzed["crashes"] == 0 and all(not c.get("failed") for c in suites.values()) \
        and trust_ok

    lines = [
        "# postroom reliability and security figures",
        "",
        f"Generated by `bench/reliability.py` on {started:%Y-%m-%d %H:%M} UTC ({platform.node()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}); database "
        f"{os.environ.get('POSTROOM_DATABASE_URL') and 'PostgreSQL' or 'SQLite'} for the crash test. "
        "Rerun it to refresh this file.",
        "",
        "## No loss, no duplicates: crash test (`bench/crash.py`)",
        "",
        f"`postroom serve` was SIGKILLed {crashed.get('kills', '?')} times ({crashed.get('stage_kills', '?')} aimed "
        "at a moment when rows were mid-stage) and restarted; clients retried every message without a 250.",
        "",
        "| figure | value |", "| --- | ---: |",
        f"| messages sent (unique Message-IDs) | {crashed.get('sent', '?')} |",
        f"| SMTP attempts (incl. retries) | {crashed.get('attempts', '?')} |",
        f"| attempts failed by a kill and retried | {crashed.get('refused', '?')} |",
        f"| acknowledged (250) | {crashed.get('acknowledged', '?')} |",
        f"| stored and processed (blob + row + done) | {crashed.get('stored', '?')} |",
        f"| duplicated | {crashed.get('duplicated', '?')} |",
        f"| lost | {crashed.get('lost', '?')} |",
        f"| rows in processing at the kills | {crashed.get('rows_processing_at_kills', '?')} |",
        f"| rows re-run after a kill (idempotent) | {crashed.get('reprocessed', '?')} |",
        f"| blob temp files left by writes cut by a kill (never renamed into place) | "
        f"{crashed.get('orphan_temp_files', '?')} |",
        f"| wall time | {crashed.get('wall', '?')} s |",
        "",
        f"Last line: `{crashed['last_line']}` (exit {crashed['exit']}).",
        *[f"- note: {n}" for n in crashed.get("notes", [])],
        "",
        "## Bad input: parser fuzzing",
        "",
        "| fuzzer | inputs tried | time | result |", "| --- | ---: | ---: | --- |",
        f"| atheris (coverage-guided, seeds: fixtures/emails) | {fuzzed['inputs']} | {fuzzed['seconds']} s | "
        f"{'no crash' if not fuzzed['crashes'] else 'crashes: ' + '; '.join(fuzzed['kinds'])} |",
        f"| hypothesis (bytes, MIME trees, broken headers) | {examples} | {hyp_seconds:.1f} s | {hyp_failing} |",
        "",
        *[f"- atheris crash `{kind}`, input starts `{start!r}`" for kind, start in fuzzed["kinds"].items()],
        "",
        "| hard input | size | parse time | peak memory (tracemalloc) | outcome |",
        "| --- | ---: | ---: | ---: | --- |",
        *[f"| {name} | {size:,} B | {secs:.2f} s | {'n/a' if peak < 0 else f'{peak / 2**20:.0f} MB'} | {outcome} |"
          for name, size, secs, peak, outcome in hard],
        "",
        "## Outages, SMTP abuse and security (pytest, real server on 127.0.0.1)",
        "",
        f"{abuse_cases} test cases in {suite_seconds:.0f} s; the open-relay test alone tries "
        f"{len(relay.FOREIGN)} foreign or disguised recipients.",
        "",
        *_counts_table(suites),
        "",
        "## Trust: a stranger against a customer's conversation (`tests/rules/test_trust_attacks.py`)",
        "",
        "A customer's conversation with a staff reply; an auto-reply rule answers every message. A stranger "
        "writes under the customer's display name and tries each way of finding the conversation. Afterwards a "
        "staff reply quotes only the customer's own message, under the contact's stored name "
        f"({'held' if trust_ok else 'FAILED'}).",
        "",
        *_trust_table(attacks),
        "",
        *_trust_suites(suites),
        "",
        "Overall: " + ("all promises held." if ok else "not all held: " + "; ".join(filter(None, [
            "" if crashed.get("ok") else "crash test",
            f"atheris found {', '.join(fuzzed['kinds'])} in the parser" if fuzzed["crashes"] else "",
            *[f"{file} failed" for file, c in suites.items() if c.get("failed")],
            "" if trust_ok else "trust"])) + "."),
        "",
    ]
    MD.write_text("\n".join(lines))
    print(f"wrote {MD}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
