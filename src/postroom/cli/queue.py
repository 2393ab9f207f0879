"""``postroom queue``: what waits in which stage, for how long; show, retry, drop, hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click

from postroom.cli.common import age, echo_json, echo_table, open_app
from postroom.errors import PostroomError
from postroom.queue import wakeup
from postroom.queue.operations import OPERATIONS, RETRYABLE
from postroom.statuses import InboundStatus
from postroom.storage import inbound, ingress

AGE_LABELS = tuple(label for _, label in inbound.AGE_BUCKETS) + (inbound.OLDER,)


def register(group: click.Group) -> None:
    group.add_command(queue)


def parse_since(value: str | None) -> datetime | None:
    """'90s', '15m', '1h', '2d' -> a UTC time that far back."""
    if not value:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if len(value) < 2 or value[-1] not in units or not value[:-1].isdigit():
        raise click.BadParameter(f"{value!r}: use a number and s, m, h or d (e.g. 1h)", param_hint="--since")
    return datetime.now(UTC) - timedelta(seconds=int(value[:-1]) * units[value[-1]])


@click.group(invoke_without_command=True)
@click.option("--tenant", default=None, help="Only this tenant.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def queue(ctx: click.Context, tenant: str | None, as_json: bool) -> None:
    """Counts per stage and status, split by age (<5m, <1h, <1d, older) with the oldest item, like qshape; then
    failed messages by reason (budget_cpu, budget_memory, attempts_exhausted, error)."""
    if ctx.invoked_subcommand:
        return
    app = open_app(ctx)
    with app.session() as session:
        lines = inbound.summary(session, tenant)
        ages = inbound.age_buckets(session, tenant)
        failures = inbound.failures_by_reason(session, tenant)
        fetched = ingress.list_mailboxes(session, tenant)
    if as_json:
        echo_json([{"stage": ln.stage, "status": ln.status, "count": ln.count,
                    "oldest": ln.oldest, "oldest_age_seconds": int((datetime.now(UTC) - ln.oldest).total_seconds())
                    if ln.oldest else None, "ages": ages.get((ln.stage, ln.status), {})} for ln in lines])
        return
    if not lines:
        click.echo("queue is empty")
    else:
        echo_table(["STAGE", "STATUS", "COUNT", *AGE_LABELS, "OLDEST"],
                   [(ln.stage, ln.status, ln.count,
                     *(ages.get((ln.stage, ln.status), {}).get(b, 0) for b in AGE_LABELS), age(ln.oldest))
                    for ln in lines])
    if failures:
        click.echo("failed by reason: " + ", ".join(f"{name} {count}" for name, count in sorted(failures.items()))
                   + " (see: postroom queue list --status failed)")
    if fetched:  # the mailboxes feeding the queue: how far behind each one is, and why
        click.echo("")
        echo_table(["MAILBOX", "TENANT", "LAST OK", "BACKLOG", "FAILURES", "ERROR"],
                   [(m.url, m.tenant, age(m.last_success_at), m.backlog, m.failures, (m.last_error or "")[:80])
                    for m in fetched])


@queue.command("list")
@click.option("--status", default=None, help=", ".join(InboundStatus))
@click.option("--tenant", default=None)
@click.option("--since", default=None, help="Only received within this long, e.g. 1h.")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_(ctx: click.Context, status: str | None, tenant: str | None, since: str | None, limit: int,
          as_json: bool) -> None:
    """List inbound messages, newest first."""
    app = open_app(ctx)
    with app.session() as session:
        records = inbound.list_inbound(session, status=status, tenant=tenant, since=parse_since(since), limit=limit)
    if as_json:
        for record in records:
            echo_json(record)
        return
    echo_table(["ID", "TENANT", "STAGE", "STATUS", "AGE", "FROM", "SUBJECT", "ERROR"],
               [(r.id, r.tenant, r.stage, r.status, age(r.received_at), r.sender or r.mail_from,
                 (r.subject or "")[:40], (r.last_error or "")[:100]) for r in records])


@queue.command("show")
@click.argument("inbound_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show(ctx: click.Context, inbound_id: int, as_json: bool) -> None:
    """Show one inbound message with its error."""
    app = open_app(ctx)
    with app.session() as session:
        record = inbound.get_inbound(session, inbound_id)
    if as_json:
        echo_json(record)
        return
    for name, value in vars(record).items():
        click.echo(f"{name + ':':14} {value if value not in (None, '') else '-'}")


def _requeue(ctx: click.Context, ids: list[int]) -> None:
    """Hand the ids to the workers now (broker, or the running serve's wake-up socket), not at the next sweep."""
    wakeup.wake(ctx.find_object(dict)["app"], inbound=ids)


@queue.command("retry")
@click.argument("inbound_id", type=int, required=False)
@click.option("--failed", "all_failed", is_flag=True, help="Retry every failed or parse_failed message.")
@click.option("--since", default=None, help="With --failed: only those received within this long.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def retry(ctx: click.Context, inbound_id: int | None, all_failed: bool, since: str | None, as_json: bool) -> None:
    """Put a message (or all failed ones) back to pending; the workers pick it up."""
    if (inbound_id is None) == (not all_failed):
        raise click.UsageError("give either an ID or --failed")
    app = open_app(ctx)
    with app.session() as session:
        if all_failed:
            ids = [r.id for status in (InboundStatus.FAILED, InboundStatus.PARSE_FAILED)
                   for r in inbound.list_inbound(session, status=status, since=parse_since(since), limit=100_000)]
        else:
            ids = [inbound_id]  # type: ignore[list-item]
        for one in ids:
            inbound.set_status(session, one, InboundStatus.PENDING, allowed_from=RETRYABLE)
    ctx.ensure_object(dict)["app"] = app
    _requeue(ctx, ids)
    if as_json:
        echo_json({"retried": ids})
    else:
        click.echo(f"{len(ids)} message(s) set to pending: {' '.join(map(str, ids)) or '-'}")


def _simple_action(name: str, status: str, allowed_from: tuple[str, ...], doc: str) -> click.Command:
    @click.command(name, help=doc)
    @click.argument("inbound_id", type=int)
    @click.pass_context
    def command(ctx: click.Context, inbound_id: int) -> None:
        app = open_app(ctx)
        try:
            with app.session() as session:
                record = inbound.set_status(session, inbound_id, status, allowed_from=allowed_from)
        except PostroomError as exc:
            raise click.ClickException(str(exc)) from exc
        if record.status in inbound.RUNNABLE:
            wakeup.wake(app, inbound=[record.id])
        click.echo(f"inbound {record.id} is now {record.status}")

    return command


for _name in ("drop", "hold", "release"):
    queue.add_command(_simple_action(_name, OPERATIONS[_name].target, OPERATIONS[_name].allowed_from,
                                     OPERATIONS[_name].doc))
