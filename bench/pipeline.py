"""End to end: a realistic mix of mail over SMTP, from first byte to every row processed (issue 9).

    .venv/bin/python bench/pipeline.py [--messages 2000] [--connections 20] [--workers 2] [--runs 3]
                                       [--worker-processes 2] [--smtp-processes 1] [--skip-pg] [--cpu 0]
                                       [--tenants 50] [--pg-runs 1] [--statements 0 [--sql]]

The mix is every fixtures/emails/*.eml (replies from Gmail/Outlook/Apple/...,
forwards, attachments, HTML, auto-replies, bounces), each sent with a fresh
Message-ID. The clock runs from the first byte sent until no row is left
outside a terminal state; the SMTP-only rate of the same run is shown too.

1. embedded default: ``postroom serve`` (SQLite + blob folder, in-process broker) with its
   default 2 worker processes, against the same with the workers as threads of the serving
   process (``--worker-processes 0``), ``--runs`` times interleaved, medians;
2. PostgreSQL + Redis (skipped if unreachable): ``postroom serve --no-workers``
   plus ``--workers`` separate ``postroom worker`` processes, on a scratch
   database and a Redis namespace of its own, with all mail for one tenant and
   with the same mail spread over ``--tenants`` tenants (interleaved,
   ``--pg-runs`` each): prints PostgreSQL / embedded and one / many tenants.
Targets (issues 9, 19): at least 300 msgs/s end to end on the embedded default;
PostgreSQL + Redis at least as fast; one tenant at least 0.9x many tenants.

``--statements N`` counts statements, transactions and round trips per message
of ``flow.process_inbound`` on PostgreSQL (SQLAlchemy engine events and the
dialect's ping), with the time and this process's CPU per message (not
PostgreSQL's); ``--sql`` also lists each statement with how often a message runs it.

``--cpu N`` first prints the pipeline's own CPU per message: N messages of the
mix stored with ``postroom.gateway.ingest`` (no SMTP), then
``flow.process_inbound`` over them in one thread (the first 40 warm up).
For an A/B, run it with ``PYTHONPATH=<other checkout>/src`` in turns.
"""

from __future__ import annotations

import os
import sys

# Run as a file, sys.path[0] is bench/, where bench/threading.py would shadow the stdlib: use the repo root.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse  # noqa: E402
import mailbox  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402

from bench.loadgen import run_load  # noqa: E402
from bench.servers import POSTROOM, free_port, postroom_env, stop_process, wait_for_banner, wait_for_smtp  # noqa: E402
from sqlalchemy import Connection, create_engine, event, func, select, text  # noqa: E402

from postroom import flow  # noqa: E402
from postroom.app import App  # noqa: E402
from postroom.gateway.ingest import inbox_address_of, ingest  # noqa: E402
from postroom.settings import Settings  # noqa: E402
from postroom.statuses import TERMINAL  # noqa: E402
from postroom.storage import tenants  # noqa: E402
from postroom.storage.tables import InboundMessage  # noqa: E402

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "emails"
PG_URL = os.environ.get("POSTROOM_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("POSTROOM_BENCH_REDIS", "redis://127.0.0.1:6379/0")


def corpus() -> list[bytes]:
    return [path.read_bytes() for path in sorted(FIXTURES.glob("*.eml"))]


WARM_UP = 40
_MESSAGE_ID = re.compile(rb"^Message-ID:[^\n]*\n", re.IGNORECASE | re.MULTILINE)


def _warmed_up(app: App, tmp: Path, messages: int, mix: list[bytes]) -> list[int]:
    """Ingest ``messages`` of the mix (fresh Message-IDs) after WARM_UP processed ones; the ids still to process."""
    with app.session() as session:
        tenant_id = tenants.add_tenant(session, "acme").id
    box = mailbox.mbox(tmp / "mix.mbox")
    for i in range(messages + WARM_UP):
        raw = _MESSAGE_ID.sub(b"", mix[i % len(mix)], count=1)
        box.add(b"Message-ID: <%s@bench.example.com>\n%s" % (uuid.uuid4().hex.encode(), raw))
    box.flush()
    ids = sorted(ingest(app.sessions, app.blobs, tenant_id=tenant_id, path=tmp / "mix.mbox",
                        inbox_address=inbox_address_of("acme", "mail.test")).ids)
    for row in ids[:WARM_UP]:
        flow.process_inbound(app, row)
    return ids[WARM_UP:]


def pipeline_cpu(messages: int, mix: list[bytes]) -> None:
    """CPU per message of ``flow.process_inbound`` alone (one thread, embedded default, no SMTP)."""
    with tempfile.TemporaryDirectory(prefix="postroom-bench-cpu-") as tmp:
        app = App.open(Settings(data_dir=Path(tmp) / "data", mail_domain="mail.test"))
        ids = _warmed_up(app, Path(tmp), messages, mix)
        statuses: Counter[str | None] = Counter()
        cpu, wall = time.process_time(), time.perf_counter()
        for row in ids:
            statuses[flow.process_inbound(app, row)] += 1
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        app.close()
    n = len(ids)
    print(f"{'pipeline alone (1 thread, no SMTP)':<34} CPU {1000 * cpu / n:.2f} ms/msg, wall {1000 * wall / n:.2f} "
          f"ms/msg ({n} msgs; statuses {dict(statuses)})", flush=True)


def add_tenants(data: Path, database_url: str, count: int) -> str:
    """Tenants t01… besides acme (in this process: a CLI call per tenant costs seconds); their inboxes, acme's first."""
    app = App.open(Settings(data_dir=data, database_url=database_url, mail_domain="mail.test"))
    with app.session() as session:
        slugs = ["acme", *(tenants.add_tenant(session, f"t{n:02d}").slug for n in range(1, count))]
    app.close()
    return ",".join(f"inbox@{slug}.mail.test" for slug in slugs)


@contextmanager
def deployment(*, database_url: str, broker_url: str, workers: int, smtp_processes: int,
               worker_processes: int = 0, tenant_count: int = 1) -> Iterator[tuple[int, str, str]]:
    """``postroom serve`` (+ ``postroom worker`` processes when there is a broker) in a fresh data dir.

    Yields the SMTP port, the database URL and the recipients (one inbox per tenant).
    """
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="postroom-bench-pipeline-") as tmp:
        data = Path(tmp) / "data"
        env = postroom_env(data, port, POSTROOM_DATABASE_URL=database_url, POSTROOM_BROKER_URL=broker_url,
                           POSTROOM_BROKER_NAMESPACE=f"bench-{uuid.uuid4().hex[:8]}")
        subprocess.run([POSTROOM, "tenant", "add", "acme"], env=env, check=True, stdout=subprocess.DEVNULL)
        rcpts = add_tenants(data, database_url, tenant_count)
        cmd = [POSTROOM, "serve", "--smtp-processes", str(smtp_processes), "--worker-processes", str(worker_processes)]
        procs = []
        if broker_url:
            cmd.append("--no-workers")
            procs = [subprocess.Popen([POSTROOM, "worker"], env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL) for _ in range(workers)]
        server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for_banner(server)
            wait_for_smtp(port)
            yield port, database_url or f"sqlite:///{data / 'postroom.db'}", rcpts
        finally:
            for proc in [server, *procs]:
                stop_process(proc)


def measure(label: str, port: int, db_url: str, *, messages: int, connections: int, mix: list[bytes],
            rcpts: str = "inbox@acme.mail.test") -> float:
    """Print one run's SMTP and end-to-end rates; return the end-to-end rate."""
    engine = create_engine(db_url)
    started = time.monotonic()
    res = run_load("127.0.0.1", port, messages=messages, connections=connections, corpus=mix, rcpt=rcpts)
    received = time.monotonic()
    counts: Counter[str] = Counter()
    while True:
        with engine.connect() as conn:
            counts = Counter(dict(conn.execute(select(InboundMessage.status, func.count())
                                               .group_by(InboundMessage.status)).all()))
        pending = sum(n for status, n in counts.items() if status not in TERMINAL)
        if sum(counts.values()) >= res["sent"] and not pending:
            break
        if time.monotonic() - received > 600:
            print(f"  gave up waiting: {dict(counts)}")
            break
        time.sleep(0.2)
    done = time.monotonic()
    engine.dispose()
    rate = res["sent"] / (done - started)
    print(f"{label:<34} SMTP {res['rate']:7.0f} msgs/s; end to end {rate:7.0f} msgs/s "
          f"({res['sent']:.0f} msgs in {done - started:.1f} s; statuses {dict(counts)})", flush=True)
    return rate


@contextmanager
def scratch_pg() -> Iterator[str | None]:
    try:
        admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        name = f"postroom_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        print(f"PostgreSQL not reachable ({type(exc).__name__}); skipping that run")
        yield None
        return
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000, help="0: only the --cpu figure")
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="postroom worker processes (PostgreSQL + Redis)")
    parser.add_argument("--smtp-processes", type=int, default=1)
    parser.add_argument("--worker-processes", type=int, default=2,
                        help="embedded default: pipeline worker processes of `postroom serve` (0: in-process threads)")
    parser.add_argument("--runs", type=int, default=3, help="embedded runs per setting (interleaved; medians)")
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--pg-runs", type=int, default=1, help="PostgreSQL runs per tenant count (interleaved)")
    parser.add_argument("--tenants", type=int, default=50, help="the same mail spread over this many tenants")
    parser.add_argument("--statements", type=int, default=0, metavar="N",
                        help="first count statements and round trips per message on PostgreSQL over N messages")
    parser.add_argument("--sql", action="store_true", help="with --statements: list each statement per message")
    parser.add_argument("--cpu", type=int, default=0, metavar="N",
                        help="first measure the pipeline's CPU per message over N messages (no SMTP)")
    args = parser.parse_args()
    mix = corpus()
    print(f"{args.messages} msgs over {args.connections} connections, mix of {len(mix)} fixture messages "
          f"(avg {sum(map(len, mix)) / len(mix) / 1024:.1f} KiB), {args.smtp_processes} SMTP process(es)")
    if args.cpu:
        pipeline_cpu(args.cpu, mix)
    if args.statements:
        count_statements(args.statements, mix, show_sql=args.sql)
    if not args.messages:
        return
    rates: dict[int, list[float]] = {args.worker_processes: [], 0: []}
    for _ in range(args.runs):
        for procs in rates:
            with deployment(database_url="", broker_url="", workers=0, smtp_processes=args.smtp_processes,
                            worker_processes=procs) as (port, db, _):
                rates[procs].append(measure(f"embedded (SQLite), {procs} worker procs", port, db,
                                            messages=args.messages, connections=args.connections, mix=mix))
    default, threads = (statistics.median(rates[procs]) for procs in rates)
    print(f"median end to end, embedded: {args.worker_processes} worker processes {default:.0f} msgs/s, workers in "
          f"the serving process {threads:.0f} msgs/s (ratio {default / threads:.2f}); target 300", flush=True)
    if args.skip_pg:
        return
    pg_rates: dict[int, list[float]] = {1: [], args.tenants: []}
    for _ in range(args.pg_runs):
        for count in pg_rates:
            with scratch_pg() as pg:
                if pg is None:
                    return
                with deployment(database_url=pg, broker_url=REDIS_URL, workers=args.workers,
                                smtp_processes=args.smtp_processes, tenant_count=count) as (port, db, rcpts):
                    pg_rates[count].append(measure(f"PostgreSQL + Redis, {args.workers} workers, {count} tenant(s)",
                                                   port, db, messages=args.messages, connections=args.connections,
                                                   mix=mix, rcpts=rcpts))
    one, many = (statistics.median(pg_rates[count]) for count in pg_rates)
    print(f"median end to end, PostgreSQL + Redis with {args.workers} workers: one tenant {one:.0f} msgs/s, "
          f"{args.tenants} tenants {many:.0f} msgs/s")
    print(f"ratio PostgreSQL + Redis (one tenant) / embedded default: {one / default:.2f}; "
          f"ratio one tenant / {args.tenants} tenants: {one / many:.2f} (target >= 0.9)")


def count_statements(messages: int, mix: list[bytes], *, show_sql: bool = False) -> None:
    """Statements and round trips per message of ``flow.process_inbound`` on PostgreSQL (one thread, no SMTP).

    Round trips: every statement, BEGIN and COMMIT of each transaction (psycopg sends each on its own; none in
    autocommit, where a statement is its own transaction), and each liveness ping of a pooled connection at
    checkout (``storage.db``; the pipeline's own checkouts skip it). ``show_sql`` lists each statement with how
    often a message runs it, to see which are repeated or avoidable.
    """
    with scratch_pg() as pg, tempfile.TemporaryDirectory(prefix="postroom-bench-sql-") as tmp:
        if pg is None:
            return
        app = App.open(Settings(data_dir=Path(tmp) / "data", database_url=pg, mail_domain="mail.test"))
        ids = _warmed_up(app, Path(tmp), messages, mix)
        counts: Counter[str] = Counter()
        sql: Counter[str] = Counter()
        listeners = {(app.engine, "before_cursor_execute"): lambda *a: sql.update([" ".join(a[2].split())[:160]]),
                     (app.engine, "begin"): lambda conn: counts.update(["transactions"] * _sends_begin(conn))}
        ping = app.engine.dialect.do_ping
        app.engine.dialect.do_ping = lambda dbapi_conn: counts.update(["pings"]) or ping(dbapi_conn)  # type: ignore
        for (target, name), listener in listeners.items():
            event.listen(target, name, listener)
        started, cpu = time.perf_counter(), time.process_time()
        for row in ids:
            flow.process_inbound(app, row)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        for (target, name), listener in listeners.items():
            event.remove(target, name, listener)
        app.close()
    n, statements = len(ids), sum(sql.values())
    if show_sql:
        for statement, count in sql.most_common():
            print(f"{count / n:6.2f}  {statement}")
    print(f"PostgreSQL per message ({n} msgs): {statements / n:.1f} statements, "
          f"{counts['transactions'] / n:.1f} BEGIN/COMMIT transactions, {counts['pings'] / n:.1f} pool pings, "
          f"{(statements + 2 * counts['transactions'] + counts['pings']) / n:.1f} round trips; "
          f"{elapsed / n * 1000:.2f} ms and {cpu / n * 1000:.2f} ms CPU of this process per message "
          "(one thread, counting)", flush=True)


def _sends_begin(conn: Connection) -> bool:
    """False for a connection in autocommit: psycopg then sends neither BEGIN nor COMMIT."""
    return not conn.connection.dbapi_connection.autocommit


if __name__ == "__main__":
    main()
