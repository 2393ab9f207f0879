"""``postroom conversations`` and ``postroom inbox``: where mail ended up, and putting it right."""

from __future__ import annotations

from pathlib import Path

import click

from postroom.cli.common import age, echo_json, echo_table, open_app
from postroom.errors import PostroomError
from postroom.exports import Period, collect
from postroom.exports.mbox import to_mbox
from postroom.exports.pdf import to_pdf
from postroom.outbound import actions
from postroom.queue import wakeup
from postroom.storage import blocks, conversation_actions, conversation_views, threading_lookup
from postroom.storage.tables.conversations import STATUSES
from postroom.storage.tenants import get_tenant


def register(group: click.Group) -> None:
    group.add_command(conversations_group)
    group.add_command(inbox)


@click.group("conversations")
def conversations_group() -> None:
    """Conversations: list, show, dump for scoring, auto-close, spam, threading settings."""


@conversations_group.command("list")
@click.option("--tenant", required=True)
@click.option("--status", type=click.Choice(STATUSES), default=None)
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_(ctx: click.Context, tenant: str, status: str | None, limit: int, as_json: bool) -> None:
    """Conversations of TENANT, most recently active first."""
    app = open_app(ctx)
    with app.session() as session:
        found = conversation_views.list_conversations(session, tenant, status=status, limit=limit)
    if as_json:
        for conv in found:
            echo_json(conv)
        return
    if not found:
        click.echo("no conversations")
        return
    echo_table(["ID", "REF", "STATUS", "ACTIVE", "MSGS", "CONTACT", "SUBJECT", "FLAGS"],
               [(c.id, c.reference, c.status, age(c.last_activity_at), c.message_count, c.contact_email or "-",
                 c.subject[:50], ",".join(c.flags) or "-") for c in found])


@conversations_group.command("show")
@click.argument("conversation_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show(ctx: click.Context, conversation_id: int, as_json: bool) -> None:
    """One conversation with its messages in order."""
    app = open_app(ctx)
    with app.session() as session:
        conv, messages = conversation_views.get_conversation(session, conversation_id)
    if as_json:
        echo_json({**vars(conv), "messages": messages})
        return
    click.echo(f"#{conv.id} [{conv.reference}] {conv.subject}")
    click.echo(f"status: {conv.status}   contact: {conv.contact_name} <{conv.contact_email or '-'}>   "
               f"responsible: user {conv.responsible_user_id or '-'} team {conv.responsible_team_id or '-'}")
    if conv.flags or conv.tags:
        click.echo(f"flags: {', '.join(conv.flags) or '-'}   tags: {', '.join(conv.tags) or '-'}")
    if conv.follows_id is not None:
        click.echo(f"follows: conversation #{conv.follows_id} (an older one with this subject, picked up again)")
    for m in messages:
        click.echo("")
        marks = f"  [{', '.join(m.flags)}]" if m.flags else ""
        click.echo(f"--- message {m.id} {m.direction} {m.kind} via {m.matched_via or '-'} "
                   f"from {m.author_name} <{m.author_email}> {m.sent_at or ''}{marks}")
        click.echo(m.reply_text.strip() or m.text.strip())


@conversations_group.command("dump")
@click.option("--tenant", required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (the only format).")
@click.pass_context
def dump(ctx: click.Context, tenant: str, as_json: bool) -> None:
    """One JSON object per conversation: id, reference, subject, status, contact, message_ids."""
    app = open_app(ctx)
    with app.session() as session:
        rows = conversation_views.dump(session, tenant)
    for row in rows:
        echo_json(row)


@conversations_group.command("export")
@click.argument("conversation_id", type=int)
@click.option("--format", "fmt", type=click.Choice(["pdf", "mbox"]), required=True)
@click.option("--since", default=None, help="From this day or instant on: YYYY-MM-DD or ISO 8601 (naive is UTC).")
@click.option("--until", default=None, help="Up to this instant, or through the end of this day (YYYY-MM-DD).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), required=True,
              help="File to write ('-' for standard output).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def export(ctx: click.Context, conversation_id: int, fmt: str, since: str | None, until: str | None, output: str,
           as_json: bool) -> None:
    """Write a conversation (or the messages of a period) as a PDF transcript or an mbox."""
    period = Period.parse(since, until)
    app = open_app(ctx)
    with app.session() as session:
        summary, messages = conversation_views.get_conversation(session, conversation_id)
        items = collect(session, app.blobs, summary.tenant_id, messages, period, raw=fmt == "mbox")
    data = to_pdf(summary, items, period) if fmt == "pdf" else to_mbox(items)
    if output == "-":
        click.get_binary_stream("stdout").write(data)
        return
    try:
        Path(output).write_bytes(data)
    except OSError as exc:
        raise PostroomError(f"cannot write {output}: {exc.strerror or exc}") from exc
    report = {"conversation_id": summary.id, "format": fmt, "file": output, "messages": len(items),
              "bytes": len(data)}
    if as_json:
        echo_json(report)
        return
    click.echo(f"wrote {len(items)} of {len(messages)} message(s) of {summary.reference} to {output} "
               f"({len(data):,} bytes)")


@conversations_group.command("autoclose")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def autoclose(ctx: click.Context, as_json: bool) -> None:
    """Close conversations idle longer than their tenant's auto-close setting (the scheduled job)."""
    app = open_app(ctx)
    with app.session() as session:
        closed = conversation_actions.autoclose(session)
    if as_json:
        echo_json({"closed": sorted(i for ids in closed.values() for i in ids)})
        return
    total = sum(len(ids) for ids in closed.values())
    click.echo(f"{total} conversation(s) closed")


@conversations_group.command("spam")
@click.argument("conversation_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def spam(ctx: click.Context, conversation_id: int, as_json: bool) -> None:
    """Mark a conversation spam: close it and block its contact's addresses for the tenant."""
    with open_app(ctx).session() as session:
        change = blocks.mark_spam(session, conversation_id)
    if as_json:
        echo_json(change)
        return
    blocked = ", ".join(change.addresses) or "no new address"
    click.echo(f"conversation {change.conversation_id} marked spam and closed; blocked: {blocked}")


@conversations_group.command("unspam")
@click.argument("conversation_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def unspam(ctx: click.Context, conversation_id: int, as_json: bool) -> None:
    """Undo spam: reopen the conversation and unblock its contact's addresses."""
    with open_app(ctx).session() as session:
        change = blocks.unmark_spam(session, conversation_id)
    if as_json:
        echo_json(change)
        return
    lifted = ", ".join(change.addresses) or "no address was blocked"
    click.echo(f"conversation {change.conversation_id} is {change.status}; unblocked: {lifted}")


def _on_off(value: str | None) -> bool | None:
    return None if value is None else value == "on"


@conversations_group.command("settings")
@click.option("--tenant", required=True)
@click.option("--autoclose-days", default=None, help="1 to 15, or 'off'.")
@click.option("--heuristic", type=click.Choice(["on", "off"]), default=None,
              help="Match by same contact and subject within the window.")
@click.option("--heuristic-days", type=int, default=None)
@click.option("--new-mail", type=click.Choice(["new", "join_open"]), default=None,
              help="A fresh mail from a contact with an open conversation: new conversation or join it.")
@click.option("--strict-senders", type=click.Choice(["on", "off"]), default=None,
              help="Mail that finds a conversation but whose sender is not a participant goes to the inbox (on, "
                   "the default) or is attached flagged foreign_sender (off).")
@click.option("--loop-max", type=int, default=None, help="Loop breaker: messages from one sender ...")
@click.option("--loop-window-minutes", type=int, default=None, help="... within this many minutes.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def settings(ctx: click.Context, tenant: str, autoclose_days: str | None, heuristic: str | None,
             heuristic_days: int | None, new_mail: str | None, strict_senders: str | None, loop_max: int | None,
             loop_window_minutes: int | None, as_json: bool) -> None:
    """Show or change a tenant's threading settings."""
    changes: dict[str, object] = {}
    if autoclose_days is not None:
        if autoclose_days.lower() == "off":
            changes["autoclose_days"] = None
        elif autoclose_days.isdigit():
            changes["autoclose_days"] = int(autoclose_days)
        else:
            raise click.BadParameter("use 1 to 15 or 'off'", param_hint="--autoclose-days")
    for name, value in (("heuristic", _on_off(heuristic)), ("heuristic_days", heuristic_days),
                        ("new_mail", new_mail), ("strict_senders", _on_off(strict_senders)),
                        ("loop_max", loop_max), ("loop_window_minutes", loop_window_minutes)):
        if value is not None:
            changes[name] = value
    app = open_app(ctx)
    with app.session() as session:
        if changes:
            policy = threading_lookup.set_threading_settings(session, tenant, **changes)
        else:
            policy = threading_lookup.threading_policy(session, get_tenant(session, tenant).id)
    if as_json:
        echo_json(policy.as_settings())
        return
    for name, value in policy.as_settings().items():
        click.echo(f"{name + ':':22} {'off' if value is None else value}")


@click.group()
def inbox() -> None:
    """The unsorted inbox: forwards and mail that could not be placed safely."""


@inbox.command("list")
@click.option("--tenant", required=True)
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def inbox_list(ctx: click.Context, tenant: str, limit: int, as_json: bool) -> None:
    """Messages waiting in TENANT's unsorted inbox, newest first, with suggested conversations."""
    app = open_app(ctx)
    with app.session() as session:
        found = conversation_views.list_inbox(session, tenant, limit=limit)
    if as_json:
        for m in found:
            echo_json(m)
        return
    if not found:
        click.echo("the unsorted inbox is empty")
        return
    echo_table(["ID", "AGE", "VIA", "FROM", "SUBJECT", "FLAGS", "SUGGESTED", "NOTE"],
               [(m.id, age(m.created_at), m.matched_via, m.author_email or "-", m.subject[:40],
                 ",".join(m.flags) or "-", " ".join(map(str, m.suggestions)) or "-", similar_note(m) or "-")
                for m in found])


def similar_note(message: conversation_views.MessageView) -> str:
    """'same name as contact 12 (jean@old.example)': the sender's address is new, its display name is not."""
    return "; ".join(f"same name as contact {s['contact_id']} ({s['address']})" for s in message.similar_contacts)


@inbox.command("move")
@click.argument("message")
@click.option("--to", "to_conversation", type=int, default=None, help="Conversation id to move the message into.")
@click.option("--new", "new", is_flag=True, help="Start a new conversation from the message.")
@click.option("--author", default=None, help="Correct the author's e-mail address (e.g. a wrongly recovered forward).")
@click.option("--author-name", default=None)
@click.option("--tenant", default=None, help="Needed when MESSAGE is a Message-ID header value.")
@click.option("--force", is_flag=True, help="Move a customer's message into a conversation of another contact.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def inbox_move(ctx: click.Context, message: str, to_conversation: int | None, new: bool, author: str | None,
               author_name: str | None, tenant: str | None, force: bool, as_json: bool) -> None:
    """Move MESSAGE (a message id, or a Message-ID with --tenant) into a conversation or a new one.

    A customer moved between their own conversations gets a notice (template move_notice) on their channel.
    """
    if new == (to_conversation is not None):
        raise click.UsageError("give either --to CONVERSATION_ID or --new")
    app = open_app(ctx)
    if message.isdigit():
        row = int(message)
    else:
        if not tenant:
            raise click.UsageError("a Message-ID needs --tenant")
        with app.session() as session:
            found = conversation_views.message_row_by_header(session, get_tenant(session, tenant).id, message)
        if found is None:
            raise PostroomError(f"no message {message} for tenant {tenant}")
        row = found
    done = actions.move(app, row, to_conversation_id=to_conversation, new=new, force=force, author_email=author,
                        author_name=author_name)
    heard = wakeup.wake(app, outbound=[done.notice.id]) if done.notice is not None else True
    moved = done.moved
    if as_json:
        echo_json({**vars(moved), "notice_outbound_id": done.notice.id if done.notice else None})
        return
    what = "new conversation" if moved.created_conversation else "conversation"
    click.echo(f"message {moved.message_id} moved to {what} {moved.to_conversation_id}")
    if done.notice is not None:
        queued = "queued" if heard else "queued (no postroom serve is running: sent when it starts)"
        click.echo(f"notice to the customer: outbound {done.notice.id} {queued}")
    if moved.emptied:
        click.echo(f"conversation {moved.from_conversation_id} has no message left: closed, flagged emptied_by_move")
