"""Benchmark routing-rule evaluation: µs per message and rules/s for 10, 100 and 500 rules.

The rule mix is what admins write (domains, subject words, headers, regexes,
sizes, flags, nested all/any/not) and no rule stops early, so every rule is
evaluated: the worst case. The baseline in the same run is a plain Python
loop doing one precompiled ``re.search`` per rule on the subject, i.e. the
cost of the cheapest conceivable rule engine.

Run: .venv/bin/python bench/rules.py
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable

from postroom.rules import RuleInput, Ruleset, evaluate, parse_ruleset

SIZES = (10, 100, 500)


def rule(i: int, regexes: bool = True) -> dict[str, object]:
    kind = i % 8
    if not regexes and kind in (1, 6):
        kind -= 1
    when: dict[str, object]
    if kind == 0:
        when = {"from": {"domain": [f"supplier{i}.be", f"supplier{i}.nl"]}}
    elif kind == 1:
        when = {"subject": {"matches": f"(?i)factu(ur|re)-{i}|invoice #{i}"}}
    elif kind == 2:
        when = {"header": {"name": "X-Spam-Flag", "is": f"level-{i}"}}
    elif kind == 3:
        when = {"all": [{"to": {"is": f"dept{i}@acme.test"}}, {"not": {"is_auto_reply": True}}]}
    elif kind == 4:
        when = {"any": [{"subject": {"contains": [f"order {i}", f"bestelling {i}"]}},
                        {"reply_text": {"contains": f"ticket {i}"}}]}
    elif kind == 5:
        when = {"all": [{"size": {"gt": 10_000_000 + i}}, {"attachment_type": {"starts_with": "video/"}}]}
    elif kind == 6:
        when = {"body": {"matches": rf"\bREF-{i}-\d{{4}}\b"}}
    else:
        when = {"all": [{"contact": {"attribute": "tier", "is": f"tier{i}"}}, {"dmarc": {"is": "fail"}}]}
    return {"name": f"rule {i}", "when": when, "then": {"category": f"C{i}", "tags": [f"t{i}"]}}


def ruleset_of(n: int, regexes: bool = True) -> Ruleset:
    return parse_ruleset(json.dumps({"rules": [rule(i, regexes) for i in range(n)]}), f"bench-{n}.yaml")


MESSAGE = RuleInput(
    envelope_from="jan@customer.example",
    from_address="jan@customer.example",
    to=("support@acme.test",),
    recipients=("support@acme.test",),
    subject="Re: question about my order of last week",
    reply_text="Hello, I still have not received the parcel. Can you check? Jan",
    body="Hello, I still have not received the parcel. Can you check? Jan\n\n> On Monday you wrote:\n"
    + "> Thank you for your order. " * 40,
    headers=(("Subject", "Re: question"), ("X-Spam-Flag", "NO"), ("Received", "from mx by mx")),
    size=18_000,
    spf=("pass",),
    dkim=("pass",),
    dmarc=("pass",),
    contact={"tier": "silver"},
)


def per_call(fn: Callable[[], object], min_time: float = 0.3) -> float:
    """Seconds per call: best of 3 runs of enough calls to last ``min_time``."""
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        if (elapsed := time.perf_counter() - start) >= min_time / 3:
            break
        calls *= 2
    best = elapsed
    for _ in range(2):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, time.perf_counter() - start)
    return best / calls


def main() -> None:
    print("Mix with 1 rule in 4 using a regex (each search carries a timeout):")
    print(f"{'rules':>6} {'evaluate µs/msg':>16} {'rules/s':>12} {'explain µs/msg':>15} "
          f"{'re.search loop µs':>18} {'ratio':>6}")
    for n in SIZES:
        rs = ruleset_of(n)
        assert evaluate(MESSAGE, rs).fired == (), "bench messages must not match, so every rule runs"
        fast = per_call(lambda rs=rs: evaluate(MESSAGE, rs))
        slow = per_call(lambda rs=rs: evaluate(MESSAGE, rs, explain=True))
        patterns = [re.compile(f"(?i)factu(ur|re)-{i}|invoice #{i}") for i in range(n)]

        def baseline(patterns: list[re.Pattern[str]] = patterns, subject: str = MESSAGE.subject) -> None:
            for p in patterns:
                p.search(subject)

        base = per_call(baseline)
        print(f"{n:>6} {fast * 1e6:>16.1f} {n / fast:>12,.0f} {slow * 1e6:>15.1f} "
              f"{base * 1e6:>18.1f} {fast / base:>6.1f}x")
    print("Same mix without regex rules:")
    for n in SIZES:
        rs = ruleset_of(n, regexes=False)
        assert evaluate(MESSAGE, rs).fired == ()
        fast = per_call(lambda rs=rs: evaluate(MESSAGE, rs))
        print(f"{n:>6} {fast * 1e6:>16.1f} {n / fast:>12,.0f}")


if __name__ == "__main__":
    main()
