"""Check that a refactoring changed nothing: parse output and stored rows, before and after.

Usage: python bench/equivalence.py --base REV [--head REV] [--corpora ../shared/corpora] [--show 5]

Issue 15 asks that the fixtures and the corpora produce identical parse output and identical stored
rows (conversation assignment, flags, routing) before and after the restructuring. This script:

1. checks ``REV`` (and ``--head``, else the working tree is compared) out into temporary git worktrees;
2. gathers one message set: ``fixtures/emails``, every mail-like file of the corpora, and two
   generated threaded corpora from ``bench/threads.py`` (mailing list and portal style), numbered in
   one fixed order;
3. in a child process per source tree (``PYTHONPATH=<tree>/src``), parses every message with
   ``postroom.parsing.parse`` and dumps every dataclass field, then runs them all through the real CLI
   (``tenant add``, ``team add``, the example rules, ``ingest``: the durable intake and the whole
   pipeline) into a fresh SQLite database and dumps its rows;
4. runs the base twice to learn which columns differ between two identical runs (timestamps,
   random tokens and references) and leaves those out, then compares base with the working tree.

Ids are renumbered in order of first appearance, so two runs compare equal when the same messages
land in the same conversations. Prints one verdict line and the first differences; exits 1 on any.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SKIPPED_SUFFIXES = {".md", ".json", ".yml", ".yaml", ".html"}
TABLES = ("inbound_messages", "conversations", "messages", "contacts", "contact_addresses", "thread_refs",
          "message_bounces", "notification_events", "outbound_messages", "outbound_recipients")
RECEIVED_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


# --- the message set ---------------------------------------------------------------------------------------------


def gather(corpora: Path, out: Path) -> int:
    """Copy every message into ``out`` as NNNNN.eml, in one fixed order; returns the count."""
    sys.path.insert(0, str(ROOT / "bench"))
    from threads import generate_list

    sources: list[bytes] = [p.read_bytes() for p in sorted((ROOT / "fixtures" / "emails").glob("*.eml"))]
    sources += [p.read_bytes() for p in sorted(corpora.rglob("*"))
                if p.is_file() and p.suffix.lower() not in SKIPPED_SUFFIXES and p.stat().st_size]
    for portal in (False, True):
        sources += generate_list(40, seed=5, portal=portal).raws
    out.mkdir(parents=True)
    for index, raw in enumerate(sources):
        (out / f"{index:05d}.eml").write_bytes(raw)
    return len(sources)


# --- the child: dump one source tree ------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A JSON-able, order-stable form of a parse result (bytes become their digest)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, bytes | bytearray):
        return "sha256:" + hashlib.sha256(value).hexdigest()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_plain(v) for v in value]
        return sorted(items, key=json.dumps) if isinstance(value, set | frozenset) else items
    if isinstance(value, datetime):
        return value.isoformat()
    return value if value is None or isinstance(value, str | int | float | bool) else repr(value)


def _parsed(raw: bytes) -> Any:
    from postroom.errors import ParseFailed
    from postroom.parsing import parse

    try:
        return _plain(parse(raw, RECEIVED_AT))
    except ParseFailed as exc:
        return {"parse_failed": str(exc)}


def dump_parse(messages: Path) -> dict[str, Any]:
    return {p.name: _parsed(p.read_bytes()) for p in sorted(messages.iterdir())}


def _cli(env: dict[str, str], *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "postroom", *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"postroom {' '.join(args)} failed: {done.stderr.strip()[-500:]}")


def dump_rows(messages: Path, work: Path) -> dict[str, list[dict[str, Any]]]:
    env = dict(os.environ, POSTROOM_DATA_DIR=str(work), POSTROOM_MAIL_DOMAIN="mail.test")
    env.pop("POSTROOM_DATABASE_URL", None)
    env.pop("POSTROOM_BROKER_URL", None)
    env.pop("POSTROOM_BLOB_URL", None)
    _cli(env, "tenant", "add", "acme")
    _cli(env, "team", "add", "acme", "finance")
    (work / "rules").mkdir(exist_ok=True)
    shutil.copy(ROOT / "fixtures" / "rules" / "example.yaml", work / "rules" / "acme.yaml")
    _cli(env, "ingest", "--tenant", "acme", str(messages), "--json")
    db = sqlite3.connect(work / "postroom.db")
    db.row_factory = sqlite3.Row
    return {table: [dict(row) for row in db.execute(f"SELECT * FROM {table} ORDER BY id")] for table in TABLES}


def child(src: Path, messages: Path, work: Path, out: Path) -> None:
    sys.path.insert(0, str(src))
    dump = {"parse": dump_parse(messages), "rows": dump_rows(messages, work)}
    out.write_text(json.dumps(dump, default=repr, sort_keys=True))


def run_child(src: Path, messages: Path, scratch: Path, name: str) -> dict[str, Any]:
    out = scratch / f"{name}.json"
    env = dict(os.environ, PYTHONPATH=str(src))
    args = [str(src), str(messages), str(scratch / f"{name}-data"), str(out)]
    subprocess.run([sys.executable, __file__, "--child", *args], env=env, check=True)
    return json.loads(out.read_text())


# --- the comparison -----------------------------------------------------------------------------------------------


RUN_SPECIFIC = (
    (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?"), "<time>"),
    (re.compile(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} \w{3} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}"), "<date>"),
    (re.compile(r"\b(reply|bounce)\+[A-Za-z0-9._=-]+@"), r"\1+<token>@"),
    (re.compile(r"<[^<>@\s]+@[^<>@\s]*mail\.test>"), "<message-id>"),
    (re.compile(r"/[^\s\"']*-data/"), "<data folder>/"),
)


def _steady(value: Any, references: dict[str, str]) -> Any:
    """A stored string with what differs from run to run (clocks, tokens, our Message-IDs) named instead."""
    if not isinstance(value, str):
        return value
    for pattern, name in RUN_SPECIFIC:
        value = pattern.sub(name, value)
    for reference, name in references.items():
        value = value.replace(reference, name)
    return value


def renumber(rows: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Ids and foreign keys become their rank of appearance, random references and clocks a placeholder,
    so equal histories compare equal."""
    ranks: dict[tuple[str, Any], int] = {}
    references = {row["reference"]: f"<reference {n}>" for n, row in enumerate(rows["conversations"])
                  if row.get("reference")}

    def rank(kind: str, value: Any) -> Any:
        if value is None:
            return None
        return ranks.setdefault((kind, value), len([k for k in ranks if k[0] == kind]) + 1)

    out: dict[str, list[dict[str, Any]]] = {}
    for table, table_rows in rows.items():
        out[table] = [{col: rank(table if col == "id" else col, val) if col == "id" or col.endswith("_id")
                       else _steady(val, references) for col, val in row.items()} for row in table_rows]
    return out


def volatile_columns(one: dict[str, list[dict]], two: dict[str, list[dict]]) -> set[tuple[str, str]]:
    """Columns whose values differ between two runs of the same tree: clocks and random tokens."""
    columns: set[tuple[str, str]] = set()
    for table, rows in one.items():
        for a, b in zip(rows, two.get(table, []), strict=False):
            columns |= {(table, col) for col in a if a.get(col) != b.get(col)}
    return columns


def differences(base: dict[str, Any], head: dict[str, Any], skip: set[tuple[str, str]]) -> list[str]:
    found = [f"parse {name}: {field}: {base['parse'][name].get(field)!r:.120} -> {value!r:.120}"
             for name, fields in head["parse"].items() for field, value in fields.items()
             if base["parse"].get(name, {}).get(field) != value]
    found += [f"parse {name}: missing" for name in base["parse"] if name not in head["parse"]]
    for table, rows in base["rows"].items():
        others = head["rows"].get(table, [])
        if len(rows) != len(others):
            found.append(f"rows {table}: {len(rows)} rows -> {len(others)}")
        for index, (a, b) in enumerate(zip(rows, others, strict=False)):
            found += [f"rows {table}[{index}].{col}: {a.get(col)!r:.120} -> {b.get(col)!r:.120}"
                      for col in sorted(set(a) | set(b)) if (table, col) not in skip and a.get(col) != b.get(col)]
    return found


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        child(*(Path(arg) for arg in sys.argv[2:]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="git revision to compare the working tree with")
    parser.add_argument("--head", help="git revision to compare instead of the working tree")
    parser.add_argument("--corpora", type=Path, default=ROOT.parent / "shared" / "corpora")
    parser.add_argument("--show", type=int, default=10, help="differences to print")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="postroom-eq-") as tmp:
        scratch = Path(tmp)
        tree, head_tree = scratch / "base", scratch / "head"
        for path, rev in ((tree, args.base), (head_tree, args.head)):
            if rev:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(path), rev],
                               check=True)
        try:
            count = gather(args.corpora, scratch / "messages")
            print(f"{count} messages; dumping base {args.base} twice and the working tree once…", file=sys.stderr)
            base = run_child(tree / "src", scratch / "messages", scratch, "base")
            again = run_child(tree / "src", scratch / "messages", scratch, "again")
            head = run_child((head_tree if args.head else ROOT) / "src", scratch / "messages", scratch, "head")
        finally:
            for path in (tree, head_tree):
                if path.exists():
                    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=False)
    for dump in (base, again, head):
        dump["rows"] = renumber(dump["rows"])
    skip = volatile_columns(base["rows"], again["rows"])
    unstable = differences(base, again, skip)
    found = differences(base, head, skip)
    rows = sum(len(r) for r in base["rows"].values())
    print(f"equivalence vs {args.base}: {count} messages, {rows} stored rows in {len(TABLES)} tables; "
          f"{len(found)} differences (ignored {len(skip)} volatile columns: "
          f"{', '.join(sorted(f'{t}.{c}' for t, c in skip))})")
    for line in (found + [f"base itself unstable: {u}" for u in unstable])[: args.show]:
        print("  " + line)
    sys.exit(1 if found or unstable else 0)


if __name__ == "__main__":
    main()
