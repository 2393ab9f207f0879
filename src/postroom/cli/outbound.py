"""``postroom user``, ``reply``, ``note`` and ``outbound``: staff, their messages, and outbound delivery."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import click

from postroom.app import App
from postroom.cli.common import age, echo_json, echo_table, open_app
from postroom.errors import NotFound
from postroom.outbound import actions, compose
from postroom.queue import wakeup
from postroom.storage import outbound as store
from postroom.storage import staff, staff_mail

STATUSES = store.STATUSES


def register(group: click.Group) -> None:
    for command in (user, reply, note, outbound):
        group.add_command(command)


class _Waker:
    """Hands committed outbound ids to the workers now (``queue.wakeup``) and remembers whether anyone heard."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.heard = True

    def __call__(self, ids: Iterable[int]) -> None:
        self.heard = wakeup.wake(self.app, outbound=list(ids))

    @property
    def where(self) -> str:
        return "enqueued" if self.heard else "queued (no postroom serve is running: sent when it starts)"


def _read(path: str) -> str:
    return Path(path).read_text(encoding="utf-8") if path != "-" else click.get_text_stream("stdin").read()


@click.group()
def user() -> None:
    """Staff users: who answers, with which signature."""


@user.command("add")
@click.argument("tenant")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--signature-file", type=click.Path(exists=True, dir_okay=False), help="Plain-text signature.")
@click.option("--signature-html-file", type=click.Path(exists=True, dir_okay=False), help="HTML signature.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def user_add(ctx: click.Context, tenant: str, email: str, name: str, signature_file: str | None,
             signature_html_file: str | None, as_json: bool) -> None:
    """Add a staff user to TENANT."""
    app = open_app(ctx)
    info = actions.add_user(app, tenant, email=email, name=name,
                            signature_text=_read(signature_file).strip() if signature_file else "",
                            signature_html=_read(signature_html_file).strip() if signature_html_file else None)
    if as_json:
        echo_json(info)
    else:
        click.echo(f"staff user {info.id} {info.email} added to {tenant}")


@user.command("list")
@click.argument("tenant")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def user_list(ctx: click.Context, tenant: str, as_json: bool) -> None:
    """List TENANT's staff users."""
    users = actions.list_users(open_app(ctx), tenant)
    if as_json:
        for info in users:
            echo_json(info)
        return
    echo_table(["ID", "EMAIL", "NAME", "ACTIVE", "SIGNATURE", "TEAMS"],
               [(u.id, u.email, u.name, "yes" if u.active else "no",
                 "text+html" if u.signature_html else ("text" if u.signature_text else "-"), ",".join(u.teams) or "-")
                for u in users])


@user.command("notify")
@click.argument("tenant")
@click.argument("email")
@click.option("--mode", type=click.Choice(staff_mail.MODES), required=True,
              help="Mail notification events to the user: off, immediately, or as a digest.")
@click.option("--every", type=int, default=None, help="Minutes between digests (--mode digest; default 60).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def user_notify(ctx: click.Context, tenant: str, email: str, mode: str, every: int | None, as_json: bool) -> None:
    """Whether EMAIL of TENANT gets notification events by mail (new mail, mentions, assignments, bounces)."""
    with open_app(ctx).session() as session:
        found = staff.user_by_email(session, tenant, email)
        if found is None:
            raise NotFound(f"no staff user {email} in {tenant}; list them with: postroom user list {tenant}")
        setting = staff_mail.set_mode(session, found.tenant_id, found.id, mode, every)
    if as_json:
        echo_json(setting)
        return
    how = {"off": "no notification mail", "immediate": "notification mail at once",
           "digest": f"a digest every {setting.every_minutes} min"}[setting.mode]
    click.echo(f"{setting.email}: {how}")


@click.command()
@click.argument("conversation_id", type=int)
@click.option("--as", "staff_email", required=True, help="The staff user's e-mail.")
@click.option("--text", "text_file", required=True, type=click.Path(exists=True, dir_okay=False, allow_dash=True),
              help="File with the reply text ('-' for stdin).")
@click.option("--attach", "attach", multiple=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--portal/--email", "portal", default=None,
              help="Send as a portal notification or as e-mail (default: the contact's channel).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def reply(ctx: click.Context, conversation_id: int, staff_email: str, text_file: str, attach: tuple[str, ...],
          portal: bool | None, as_json: bool) -> None:
    """Queue a staff reply to the conversation's customer."""
    app = open_app(ctx)
    waker = _Waker(app)
    queued = actions.reply(app, conversation_id, staff_email, _read(text_file),
                           attachments=compose.attach_paths(app, attach),
                           channel=None if portal is None else "portal" if portal else "email",
                           dispatch=waker)
    if as_json:
        echo_json({"message": queued.message_row, "outbound": queued.outbound})
        return
    click.echo(f"outbound {queued.outbound.id} {waker.where}: {queued.outbound.message_id}")


@click.command()
@click.argument("conversation_id", type=int)
@click.option("--as", "staff_email", required=True, help="The staff user's e-mail.")
@click.option("--text", "text_file", required=True, type=click.Path(exists=True, dir_okay=False, allow_dash=True),
              help="File with the note's text ('-' for stdin).")
@click.pass_context
def note(ctx: click.Context, conversation_id: int, staff_email: str, text_file: str) -> None:
    """Add an internal note (never sent to the customer)."""
    message_row = actions.note(open_app(ctx), conversation_id, staff_email, _read(text_file))
    click.echo(f"note {message_row} added to conversation {conversation_id}")


@click.group()
def outbound() -> None:
    """Outbound mail and portal notifications: status, attempts, retry."""


@outbound.command("list")
@click.option("--status", type=click.Choice(STATUSES), default=None)
@click.option("--tenant", default=None)
@click.option("--conversation", "conversation_id", type=int, default=None)
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def outbound_list(ctx: click.Context, status: str | None, tenant: str | None, conversation_id: int | None,
                  limit: int, as_json: bool) -> None:
    """List outbound messages, newest first."""
    records = actions.list_outbound(open_app(ctx), status=status, tenant=tenant, conversation_id=conversation_id,
                                    limit=limit)
    if as_json:
        for record in records:
            echo_json(_summary(record))
        return
    echo_table(["ID", "TENANT", "KIND", "CHANNEL", "STATUS", "TRIES", "AGE", "TO", "SUBJECT", "ERROR"],
               [(r.id, r.tenant, r.kind, r.channel, r.status, r.attempts, age(r.created_at),
                 ",".join(x.address for x in r.recipients), r.subject[:40], (r.last_error or "")[:50])
                for r in records])


def _summary(record: store.OutboundRecord) -> dict:
    data = {k: v for k, v in vars(record).items() if k not in ("text", "html", "headers")}
    data["recipients"] = [vars(r) for r in record.recipients]
    return data


@outbound.command("show")
@click.argument("outbound_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.option("--body", is_flag=True, help="Also print the text part.")
@click.pass_context
def outbound_show(ctx: click.Context, outbound_id: int, as_json: bool, body: bool) -> None:
    """One outbound message with its recipients and every attempt."""
    record, attempts = actions.show_outbound(open_app(ctx), outbound_id)
    if as_json:
        echo_json({**vars(record), "recipients": [vars(r) for r in record.recipients],
                   "attempts": [vars(a) for a in attempts]})
        return
    for name in ("id", "tenant", "conversation_id", "kind", "channel", "status", "message_id", "subject",
                 "mail_from", "staff_email", "attempts", "created_at", "next_attempt_at", "expires_at", "sent_at",
                 "transport", "provider_id", "last_error"):
        value = getattr(record, name)
        click.echo(f"{name + ':':17} {value if value not in (None, '') else '-'}")
    click.echo("recipients:")
    for r in record.recipients:
        click.echo(f"  {r.address:40} {r.status:9} {r.response or ''}".rstrip())
    click.echo("attempts:")
    echo_table(["STARTED", "TRANSPORT", "OUTCOME", "CODE", "RESPONSE"],
               [(a.started_at.isoformat(timespec="seconds"), a.transport, a.outcome, a.code or "-",
                 (a.response or "")[:70]) for a in attempts])
    if body:
        click.echo("")
        click.echo(record.text)


@outbound.command("retry")
@click.argument("outbound_id", type=int)
@click.pass_context
def outbound_retry(ctx: click.Context, outbound_id: int) -> None:
    """Send a failed, bounced or unknown message again (same Message-ID and content, fresh lifetime)."""
    app = open_app(ctx)
    waker = _Waker(app)
    record = actions.retry_outbound(app, outbound_id, dispatch=waker)
    click.echo(f"outbound {record.id} {waker.where} again")
