"""Benchmark the threading engine: accuracy against References ground truth, and speed on a big tenant.

Usage: python bench/threads.py [--threads 300] [--corpus DIR] [--rate 1000] [--bulk 100000]

1. Accuracy: a generated mailing-list mbox (threads of replies from many list
   members, In-Reply-To/References as clients write them, some Exchange-style
   commas), and a portal-style one (one customer per thread, replies to staff
   answers that are not in the mailbox), is ingested through ``postroom.gateway.ingest`` and the real
   pipeline (parse -> threading -> storage), then ``conversation_views.dump`` is
   scored: precision and recall of message pairs put in the same conversation,
   against the threads the generator built. Once with headers intact, once
   with In-Reply-To/References stripped from a third of the replies.
   ``--corpus`` scores a real maildir/mbox the same way; its ground truth is
   derived from its own headers (union of In-Reply-To/References links, as
   notmuch threads), so the intact run measures fidelity to the headers.
2. Speed: a tenant bulk-filled with ``--bulk`` messages (rows written
   directly), then ``--rate`` new messages threaded: the threading+storage
   transaction alone (parsed beforehand) and the whole pipeline, each compared
   with the same work on an empty tenant in the same run.
Run by hand; prints figures. (Named threads.py, not threading.py: a bench/threading.py
would shadow the stdlib module for every script run from bench/.)
"""

from __future__ import annotations

import argparse
import email
import email.policy
import mailbox
import random
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

from sqlalchemy import insert, select

from postroom import flow, parsing
from postroom.app import App
from postroom.gateway.ingest import inbox_address_of, ingest, iter_messages
from postroom.messageids import parse_ids
from postroom.model import Envelope
from postroom.settings import Settings
from postroom.storage import conversation_views, inbound, tenants
from postroom.storage.intake import IntakeItem, store_batch
from postroom.storage.tables import Contact, ContactAddress, Conversation, Message
from postroom.subjects import subject_key

MAIL_DOMAIN = "mail.bench"
WORDS = ("build", "release", "kernel", "patch", "driver", "memory", "leak", "scheduler", "network", "docs",
         "tests", "config", "option", "crash", "timeout", "cache", "index", "search", "thread", "mail")


# --- generated mailing list --------------------------------------------------------------------------------------


@dataclass
class Generated:
    raws: list[bytes]
    truth: dict[str, int]  # Message-ID -> thread number


def generate_list(threads: int, seed: int = 7, *, portal: bool = False) -> Generated:
    """Threads of 1-12 messages from 60 list members, interleaved by date, mailing-list headers.

    ``portal``: the customer-portal shape instead: each thread is one customer writing to the
    tenant (a fifth of them have two threads), every reply also referencing the staff answer
    in between, which this run never stores (staff replies are outbound).
    """
    rng = random.Random(seed)
    members = [(f"Member {i}", f"member{i}@list-{i % 7}.example") for i in range(60)]
    customers = [(f"Customer {i}", f"customer{i}@mail-{i % 9}.example") for i in range(max(1, threads * 4 // 5))]
    start = datetime(2026, 3, 1, tzinfo=UTC)
    items: list[tuple[datetime, int, dict]] = []
    for t in range(threads):
        subject = " ".join(rng.sample(WORDS, 4)).capitalize() + f" #{t}"
        root_at = start + timedelta(minutes=rng.randrange(60 * 24 * 20))
        posts: list[dict] = []
        customer = customers[t % len(customers)]
        for n in range(rng.choice((1, 2, 3, 3, 4, 5, 6, 8, 12))):
            name, address = customer if portal else rng.choice(members)
            mid = f"<t{t}.m{n}.{rng.randrange(10**9)}@{address.split('@')[1]}>"
            post: dict = {"from": f"{name} <{address}>", "mid": mid, "thread": t,
                          "at": root_at + timedelta(minutes=n * rng.randrange(5, 600))}
            if not posts:
                post.update(subject=subject, irt=None, refs=[])
            elif portal:
                parent, staff_answer = posts[-1], f"<staff.{t}.{n}@acme.{MAIL_DOMAIN}>"
                post.update(subject="Re: " + subject, irt=staff_answer,
                            refs=[*parent["refs"], parent["mid"], staff_answer])
            else:
                parent = rng.choice(posts)
                post.update(subject=rng.choice(("Re: ", "RE: ", "Re: Re: ", "AW: ")) + subject,
                            irt=parent["mid"], refs=[*parent["refs"], parent["mid"]])
            posts.append(post)
        items += [(p["at"], i, p) for i, p in enumerate(posts)]
    items.sort(key=lambda x: (x[0], x[1]))
    raws, truth = [], {}
    for _, _, post in items:
        raws.append(_render(post, rng))
        truth[post["mid"]] = post["thread"]
    return Generated(raws, truth)


def _render(post: dict, rng: random.Random) -> bytes:
    lines = [f"From: {post['from']}", "To: dev@lists.example", f"Subject: {post['subject']}",
             f"Date: {format_datetime(post['at'])}", f"Message-ID: {post['mid']}",
             "List-Id: <dev.lists.example>", "Precedence: list"]
    if post["irt"]:
        lines.append(f"In-Reply-To: {post['irt']}")
        refs = post["refs"][-8:]
        separator = ", " if rng.random() < 0.2 else "\r\n "  # Exchange commas, or folded
        lines.append("References: " + separator.join(refs))
    body = " ".join(rng.choice(WORDS) for _ in range(40))
    lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "", body, ""]
    return "\r\n".join(lines).encode()


def strip_headers(raws: list[bytes], fraction: float, seed: int = 11) -> tuple[list[bytes], int]:
    """Remove In-Reply-To and References from ``fraction`` of the replies."""
    rng = random.Random(seed)
    out, stripped = [], 0
    for raw in raws:
        head, _, body = raw.partition(b"\r\n\r\n")
        if b"\r\nIn-Reply-To:" in head and rng.random() < fraction:
            kept, skip = [], False
            for line in head.split(b"\r\n"):
                if line[:1] in (b" ", b"\t") and skip:
                    continue
                skip = line.lower().startswith((b"in-reply-to:", b"references:"))
                if not skip:
                    kept.append(line)
            out.append(b"\r\n".join(kept) + b"\r\n\r\n" + body)
            stripped += 1
        else:
            out.append(raw)
    return out, stripped


# --- corpus ground truth from headers ----------------------------------------------------------------------------


def header_truth(raws: list[bytes]) -> dict[str, int]:
    """Thread number per Message-ID: union of each message with its In-Reply-To and References ids."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    mids = []
    for raw in raws:
        msg = email.message_from_bytes(raw.split(b"\r\n\r\n")[0].split(b"\n\n")[0], policy=email.policy.compat32)
        own = parse_ids(str(msg.get("Message-ID", "")))
        if not own:
            continue
        mids.append(own[0])
        for other in (*parse_ids(str(msg.get("In-Reply-To", ""))), *parse_ids(str(msg.get("References", "")))):
            parent[find(other)] = find(own[0])
    roots: dict[str, int] = {}
    return {m: roots.setdefault(find(m), len(roots)) for m in mids}


# --- ingest and score --------------------------------------------------------------------------------------------


def open_app(tmp: Path, name: str) -> tuple[App, int]:
    app = App.open(Settings(data_dir=tmp / name, mail_domain=MAIL_DOMAIN))
    with app.session() as session:
        tenant_id = tenants.add_tenant(session, "bench").id
    return app, tenant_id


def run_pipeline(app: App, tenant_id: int, raws: list[bytes], tmp: Path, name: str) -> float:
    box_path = tmp / f"{name}.mbox"
    box = mailbox.mbox(box_path)
    for raw in raws:
        box.add(raw)
    box.flush()
    started = time.perf_counter()
    result = ingest(app.sessions, app.blobs, tenant_id=tenant_id, path=box_path,
                    inbox_address=inbox_address_of("bench", MAIL_DOMAIN))
    for row in sorted(result.ids):
        flow.process_inbound(app, row)
    return time.perf_counter() - started


def pairs(groups: dict[object, list[str]]) -> int:
    return sum(len(v) * (len(v) - 1) // 2 for v in groups.values())


def score(app: App, truth: dict[str, int]) -> dict[str, float]:
    with app.session() as session:
        dumped = conversation_views.dump(session, "bench")
        inbox_count = len(conversation_views.list_inbox(session, "bench", limit=10**6))
    predicted = {d["id"]: [m for m in d["message_ids"] if m in truth] for d in dumped}
    cells: dict[tuple[int, int], int] = Counter()
    for cid, mids in predicted.items():
        for mid in mids:
            cells[(cid, truth[mid])] += 1
    both = sum(n * (n - 1) // 2 for n in cells.values())
    true_groups: dict[int, list[str]] = defaultdict(list)
    for mid, thread in truth.items():
        true_groups[thread].append(mid)
    pred_pairs, true_pairs = pairs(predicted), pairs(true_groups)
    return {"precision": both / pred_pairs if pred_pairs else 1.0, "recall": both / true_pairs if true_pairs else 1.0,
            "conversations": len(dumped), "threads": len(true_groups), "inbox": inbox_count}


def accuracy(label: str, raws: list[bytes], truth: dict[str, int], tmp: Path, note: str = "") -> None:
    app, tenant_id = open_app(tmp, label)
    try:
        elapsed = run_pipeline(app, tenant_id, raws, tmp, label)
        result = score(app, truth)
    finally:
        app.close()
    print(f"  {label:<34} precision {result['precision']:.3f}  recall {result['recall']:.3f}  "
          f"conversations {result['conversations']:>4} / threads {result['threads']:>4}  "
          f"inbox {result['inbox']:>3}  ({len(raws)} msgs, {len(raws) / elapsed:.0f} msg/s){note}")


# --- speed on a big tenant ---------------------------------------------------------------------------------------


def bulk_fill(app: App, tenant_id: int, count: int, seed: int = 3) -> list[str]:
    """``count`` messages in conversations of 5 on average, written as rows; returns their Message-IDs."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    contacts_n, convs_n = max(1, count // 20), max(1, count // 5)
    with app.session() as session:
        session.execute(insert(Contact), [{"tenant_id": tenant_id, "name": f"C{i}", "created_at": now}
                                          for i in range(contacts_n)])
        contact_ids = list(session.scalars(select(Contact.id).where(Contact.tenant_id == tenant_id)))
        session.execute(insert(ContactAddress), [{"tenant_id": tenant_id, "contact_id": cid, "primary": True,
                                                  "address": f"customer{n}@bulk.example"}
                                                 for n, cid in enumerate(contact_ids)])
        conv_rows = []
        for i in range(convs_n):
            subject = " ".join(rng.sample(WORDS, 3)) + f" {i}"
            conv_rows.append({"tenant_id": tenant_id, "reference": f"B{i:07d}", "subject": subject,
                              "subject_key": subject_key(subject), "status": rng.choice(("open", "closed")),
                              "contact_id": rng.choice(contact_ids), "tags": [], "flags": [],
                              "last_activity_at": now - timedelta(days=rng.randrange(60)), "created_at": now,
                              "updated_at": now})
        for start in range(0, len(conv_rows), 5000):
            session.execute(insert(Conversation), conv_rows[start:start + 5000])
        conv_ids = list(session.scalars(select(Conversation.id).where(Conversation.tenant_id == tenant_id)))
        mids = [f"<bulk.{i}.{rng.randrange(10**9)}@bulk.example>" for i in range(count)]
        rows = [{"tenant_id": tenant_id, "conversation_id": conv_ids[i % len(conv_ids)], "direction": "in",
                 "kind": "email", "author_email": f"customer{i % contacts_n}@bulk.example", "subject": "x",
                 "message_id": mid, "created_at": now - timedelta(days=1), "text": "bulk", "reply_text": "bulk",
                 "in_reply_to": [], "references": [], "attachments": [], "flags": [], "suggestions": []}
                for i, mid in enumerate(mids)]
        for start in range(0, len(rows), 5000):
            session.execute(insert(Message), rows[start:start + 5000])
    return mids


def sample_mail(count: int, known: list[str], seed: int) -> list[bytes]:
    """A realistic mix: 60% replies to stored ids, 20% same-subject follow-ups, 20% new questions."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        kind = rng.random()
        headers = ""
        subject = f"New question {seed}.{i}"
        sender = f"customer{rng.randrange(5000)}@bulk.example"
        if kind < 0.6 and known:
            parent = rng.choice(known)
            headers = f"In-Reply-To: {parent}\r\nReferences: {parent}\r\n"
            subject = "Re: x"
        elif kind < 0.8:
            subject = f"Re: {' '.join(rng.sample(WORDS, 3))} {rng.randrange(1000)}"
        out.append((f"From: <{sender}>\r\nTo: inbox@bench.{MAIL_DOMAIN}\r\nSubject: {subject}\r\n"
                    f"Date: {format_datetime(datetime.now(UTC))}\r\nMessage-ID: <s{seed}.{i}@bench.example>\r\n"
                    f"{headers}MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nHello {i}\r\n").encode())
    return out


def store(app: App, tenant_id: int, raws: list[bytes]) -> list[int]:
    rcpt = (inbox_address_of("bench", MAIL_DOMAIN),)
    items = [IntakeItem(raw, Envelope("x@bulk.example", rcpt), {tenant_id: rcpt}) for raw in raws]
    return [i for ids in store_batch(app.sessions, app.blobs, items) for i in ids]


def time_threading(app: App, tenant_id: int, raws: list[bytes]) -> float:
    """Messages/s of the threading+storage transaction alone (what flow runs after parsing)."""
    rows = store(app, tenant_id, raws)
    with app.session() as session:
        records = [inbound.get_inbound(session, r) for r in rows]
    parsed = [parsing.parse(raw) for raw in raws]
    started = time.perf_counter()
    for record, message in zip(records, parsed, strict=True):
        with app.session() as session:
            match, known = flow.locked_match(session, record, message, mail_domain=MAIL_DOMAIN)
            flow.record_message(session, record, message, match, known=known)
            inbound.advance(session, record.id, stage="done", status="done")
    return len(raws) / (time.perf_counter() - started)


def time_pipeline(app: App, tenant_id: int, raws: list[bytes]) -> float:
    rows = store(app, tenant_id, raws)
    started = time.perf_counter()
    for row in rows:
        flow.process_inbound(app, row)
    return len(raws) / (time.perf_counter() - started)


def speed(tmp: Path, rate_count: int, bulk: int) -> None:
    results = {}
    for label, fill in (("empty tenant", 0), (f"{bulk:,} messages", bulk)):
        app, tenant_id = open_app(tmp, f"speed-{fill}")
        try:
            started = time.perf_counter()
            known = bulk_fill(app, tenant_id, fill) if fill else []
            fill_s = time.perf_counter() - started
            threading_rate = time_threading(app, tenant_id, sample_mail(rate_count, known, 1))
            pipeline_rate = time_pipeline(app, tenant_id, sample_mail(rate_count, known, 2))
        finally:
            app.close()
        results[label] = (threading_rate, pipeline_rate)
        filled = f" (bulk fill {fill_s:.1f} s)" if fill else ""
        print(f"  {label:<18} threading+storage {threading_rate:7.0f} msg/s   "
              f"whole pipeline {pipeline_rate:6.0f} msg/s{filled}")
    (t0, p0), (t1, p1) = results.values()
    print(f"  ratio big/empty    threading+storage {t1 / t0:.2f}            whole pipeline {p1 / p0:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=300, help="generated threads")
    parser.add_argument("--corpus", type=Path, default=None, help="a real maildir/mbox/dir to score as well")
    parser.add_argument("--rate", type=int, default=1000, help="messages timed per speed run")
    parser.add_argument("--bulk", type=int, default=100_000, help="messages the big tenant already holds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        print("accuracy: pairs of messages in the same conversation vs the same thread")
        generated = generate_list(args.threads)
        accuracy("generated list, headers intact", generated.raws, generated.truth, tmp)
        stripped, count = strip_headers(generated.raws, 1 / 3)
        accuracy("generated list, 1/3 replies stripped", stripped, generated.truth, tmp,
                 f"  [{count} replies stripped]")
        portal = generate_list(args.threads, seed=8, portal=True)
        accuracy("portal-style, headers intact", portal.raws, portal.truth, tmp)
        stripped, count = strip_headers(portal.raws, 1 / 3)
        accuracy("portal-style, 1/3 replies stripped", stripped, portal.truth, tmp, f"  [{count} replies stripped]")
        if args.corpus:
            raws = [raw for _, raw in iter_messages(args.corpus)]
            truth = header_truth(raws)
            accuracy(f"{args.corpus.name}, headers intact", raws, truth, tmp)
            stripped, count = strip_headers([r.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") for r in raws], 1 / 3)
            accuracy(f"{args.corpus.name}, 1/3 replies stripped", stripped, truth, tmp, f"  [{count} stripped]")
        print(f"speed: {args.rate} new messages (60% replies by id, 20% subject follow-ups, 20% new)")
        speed(tmp, args.rate, args.bulk)


if __name__ == "__main__":
    main()
