"""``postroom mailbox``: IMAP mailboxes a tenant's mail is fetched from (add, list, remove, test, fetch, run)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

from postroom.app import App
from postroom.cli.common import age, echo_json, echo_table, open_app
from postroom.errors import PostroomError
from postroom.ingress.imap import Connection, MailboxFetcher, MailboxFetchers, owner_name, parse_url
from postroom.ingress.intake import Dispatch
from postroom.queue.wakeup import wake
from postroom.storage import ingress as mailboxes
from postroom.storage.ingress import MailboxRecord


def register(group: click.Group) -> None:
    group.add_command(mailbox)


def _secret_from_file(path: str) -> str:
    secret = Path(path).read_text().strip()
    if not secret:
        raise PostroomError(f"{path} is empty")
    return secret


def state(record: MailboxRecord) -> dict:
    """What operators see of a mailbox: never its secret."""
    return {"id": record.id, "tenant": record.tenant, "url": record.url, "auth": record.auth, "after": record.after,
            "uidvalidity": record.uidvalidity, "last_uid": record.last_uid, "backlog": record.backlog,
            "last_success_at": record.last_success_at, "failures": record.failures,
            "last_error": record.last_error, "last_error_at": record.last_error_at,
            "fetched_by": record.lease_owner, "lease_until": record.lease_until}


def _find(app: App, ref: str) -> MailboxRecord:
    """A mailbox by id, or by URL when only one tenant fetches it."""
    with app.session() as session:
        if ref.isdigit():
            return mailboxes.get_mailbox(session, int(ref))
        found = [m for m in mailboxes.list_mailboxes(session) if m.url == ref]
    if len(found) != 1:
        raise PostroomError(f"{'no' if not found else 'several'} mailbox(es) {ref}: give an ID (mailbox list)")
    return found[0]


@click.group()
def mailbox() -> None:
    """IMAP mailboxes fetched into a tenant's inbox (postroom serve fetches them)."""


@mailbox.command("add")
@click.argument("tenant")
@click.argument("url")
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False), help="File holding the password.")
@click.option("--token-command", help="XOAUTH2: a command printing a fresh access token (run at each login).")
@click.option("--after", default="seen", show_default=True,
              help="Once a message is stored: seen (mark \\Seen), none (leave it), or move:FOLDER.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def add(ctx: click.Context, tenant: str, url: str, password_file: str | None, token_command: str | None, after: str,
        as_json: bool) -> None:
    """Fetch URL (imaps://user@host/INBOX) for TENANT; the default never deletes anything on the server."""
    if (password_file is None) == (token_command is None):
        raise click.UsageError("give either --password-file or --token-command")
    parse_url(url)
    app = open_app(ctx)
    with app.session() as session:
        record = mailboxes.add_mailbox(
            session, tenant, url, auth="password" if password_file else "xoauth2",
            secret=_secret_from_file(password_file) if password_file else str(token_command), after=after)
    if as_json:
        echo_json(state(record))
        return
    click.echo(f"mailbox {record.id}: {tenant} fetches {url} (after storing: {after}); postroom serve picks it up")


@mailbox.command("list")
@click.option("--tenant", default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_(ctx: click.Context, tenant: str | None, as_json: bool) -> None:
    """Mailboxes with their state: last success, backlog, consecutive failures and the last error."""
    app = open_app(ctx)
    with app.session() as session:
        records = mailboxes.list_mailboxes(session, tenant)
    if as_json:
        for record in records:
            echo_json(state(record))
        return
    echo_table(["ID", "TENANT", "URL", "AFTER", "LAST OK", "BACKLOG", "FAILURES", "ERROR"],
               [(r.id, r.tenant, r.url, r.after, age(r.last_success_at), r.backlog, r.failures,
                 (r.last_error or "")[:80]) for r in records])


@mailbox.command("remove")
@click.argument("ref")
@click.pass_context
def remove(ctx: click.Context, ref: str) -> None:
    """Stop fetching a mailbox (by ID or URL); what was stored stays."""
    app = open_app(ctx)
    record = _find(app, ref)
    with app.session() as session:
        mailboxes.remove_mailbox(session, record.id)
    click.echo(f"mailbox {record.id} ({record.url}) removed")


@mailbox.command("test")
@click.argument("ref")
@click.pass_context
def test(ctx: click.Context, ref: str) -> None:
    """Log in and open the folder; say what is there and whether the server offers IDLE."""
    app = open_app(ctx)
    record = _find(app, ref)
    try:
        connection = Connection(record)
    except Exception as exc:
        raise PostroomError(f"mailbox {record.id} ({record.url}): {exc}") from None
    try:
        waiting = len(connection.uids_after(record.last_uid if record.uidvalidity == connection.uidvalidity else 0))
        click.echo(f"mailbox {record.id}: logged in, UIDVALIDITY {connection.uidvalidity}, {waiting} message(s) "
                   f"to fetch, {'IDLE' if 'IDLE' in connection.capabilities else 'polling (no IDLE)'}")
    finally:
        connection.close()


def _dispatch(app: App) -> Dispatch:
    """Hand ids to a running serve (or broker); when none listens, serve's start-up sweep picks them up."""
    return lambda ids: wake(app, inbound=list(ids))


@mailbox.command("fetch")
@click.argument("ref")
@click.pass_context
def fetch(ctx: click.Context, ref: str) -> None:
    """Fetch what is new in one mailbox now, then exit."""
    app = open_app(ctx)
    record = _find(app, ref)
    stored = MailboxFetcher(app, record.id, _dispatch(app), owner_name()).fetch_now()
    click.echo(f"mailbox {record.id}: {stored} new message(s) stored")


@mailbox.command("run")
@click.pass_context
def run(ctx: click.Context) -> None:
    """Fetch every mailbox until interrupted, without the rest of serve (e.g. on another machine)."""
    app = open_app(ctx)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    fetchers = MailboxFetchers(app, _dispatch(app)).start()
    click.echo("fetching mailboxes; Ctrl-C to stop", err=True)
    stop.wait()
    fetchers.stop()
