"""``postroom rules``: check a rules file and try it on a message, changing nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

import click

from postroom.cli.common import open_app
from postroom.model import Envelope, to_jsonable
from postroom.parsing import parse
from postroom.rules import RoutingDecision, RuleInput, RulesError, directory, evaluate, guard_auto_reply, read_ruleset
from postroom.rules.model import Ruleset
from postroom.staff_directory import StaffDirectory


class RulesRefused(click.ClickException):
    """Prints the file:line:col lines as they are and exits 1."""

    exit_code = 1

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines

    def show(self, file: IO[Any] | None = None) -> None:
        for line in self.lines:
            click.echo(line, err=True)


def register(group: click.Group) -> None:
    group.add_command(rules_group)


@click.group("rules")
def rules_group() -> None:
    """Check routing rules files and see what they do to a message."""


def _load(file: Path, ctx: click.Context, tenant: str | None) -> Ruleset:
    """The compiled file; with a tenant, also refused when it names a user, team or template the tenant lacks."""
    try:
        ruleset = read_ruleset(file)
    except RulesError as exc:
        raise RulesRefused(exc.lines) from None
    if tenant is not None:
        app = open_app(ctx)
        with app.session() as session:
            missing = directory.problems(ruleset, StaffDirectory(app, session, tenant))
        if missing:
            raise RulesRefused(missing)
    return ruleset


TENANT = click.option("--tenant", default=None,
                      help="Also check the users, teams and templates the rules name against this tenant.")


@rules_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@TENANT
@click.pass_context
def check_command(ctx: click.Context, file: Path, tenant: str | None) -> None:
    """Validate FILE; print every problem as file:line:col and exit 1 if there are any."""
    ruleset = _load(file, ctx, tenant)
    click.echo(f"OK {file}: {len(ruleset)} rule{'s' if len(ruleset) != 1 else ''}")


@rules_group.command("test")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("message", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the trace and decision as JSON.")
@click.option("--from", "mail_from", help="Envelope sender (default: the From address).")
@click.option("--to", "rcpt_tos", multiple=True, help="Envelope recipient, repeatable (default: To and Cc).")
@click.option("--reply", "is_reply", is_flag=True, help="Pretend threading matched a conversation.")
@click.option("--contact", "contact", multiple=True, metavar="KEY=VALUE", help="Contact attribute, repeatable.")
@click.option("--language", help="Pretend the message's language is known.")
@TENANT
@click.pass_context
def test_command(
    ctx: click.Context,
    file: Path,
    message: Path,
    as_json: bool,
    mail_from: str | None,
    rcpt_tos: tuple[str, ...],
    is_reply: bool,
    contact: tuple[str, ...],
    language: str | None,
    tenant: str | None,
) -> None:
    """Show rule by rule whether FILE's rules match MESSAGE.eml and why, then the resulting actions."""
    ruleset = _load(file, ctx, tenant)
    parsed = parse(message.read_bytes())
    if any("=" not in c for c in contact):
        raise click.BadParameter("expected KEY=VALUE", param_hint="--contact")
    envelope = Envelope(
        mail_from=parsed.sender.address if mail_from is None and parsed.sender else (mail_from or ""),
        rcpt_tos=rcpt_tos or tuple(a.address for a in (*parsed.to, *parsed.cc)),
    )
    inp = RuleInput.from_parsed(
        parsed, envelope, is_reply=is_reply, new_conversation=not is_reply,
        contact=dict(c.split("=", 1) for c in contact), language=language,
    )
    decision = guard_auto_reply(evaluate(inp, ruleset, explain=True), inp, lambda _address: False)
    if as_json:
        click.echo(json.dumps({"rules": str(file), "message": str(message), **to_jsonable(decision)}, indent=2))
    else:
        _print(file, message, inp, ruleset, decision)


def _print(file: Path, message: Path, inp: RuleInput, ruleset: Ruleset, decision: RoutingDecision) -> None:
    click.echo(f"Rules:   {file} ({len(ruleset)} rules)")
    click.echo(f"Message: {message}")
    click.echo(f"  from {inp.from_address or '(none)'} (envelope {inp.envelope_from or '<>'}), "
               f"subject {inp.subject!r}")
    click.echo("")
    for i, t in enumerate(decision.trace, 1):
        status = "skipped" if t.matched is None else ("MATCH" if t.matched else "no")
        click.echo(f"{i:3}  {status:8} {t.name} (line {t.line})")
        if t.matched is None:
            click.echo(f"{'':14}{t.note}")
        else:
            click.echo(f"{'':14}decided by: {t.decided_by} (line {t.decided_at})")
    for warning in decision.warnings:
        click.echo(f"warning: {warning}")
    click.echo("")
    click.echo("Result:")
    for line in _result_lines(decision):
        click.echo(f"  {line}")
    click.echo("Nothing was changed.")


def _result_lines(d: RoutingDecision) -> list[str]:
    by: dict[str, list[str]] = {}
    for action in d.actions:
        names = by.setdefault(action.kind, [])
        if action.rule not in names:
            names.append(action.rule)

    def src(kind: str, every: bool = False) -> str:
        names = by.get(kind, [])
        return f"   [{', '.join(names) if every else names[-1]}]" if names else ""

    lines = [f"disposition: {d.disposition}" + src(d.disposition if d.disposition != "accept" else "")]
    if d.reject:
        lines.append(f"reject with: {d.reject}")
    for kind in ("category", "status", "unit"):
        if getattr(d, kind) is not None:
            lines.append(f"{kind}: {getattr(d, kind)}{src(kind)}")
    if d.assign:
        lines.append(f"assign: {d.assign.kind} {d.assign.value}{src('assign')}")
    if d.tags:
        lines.append(f"tags: {', '.join(d.tags)}{src('tags', every=True)}")
    if d.forward:
        lines.append(f"forward a copy to: {', '.join(d.forward)}{src('forward', every=True)}")
    if d.auto_reply:
        lines.append(f"auto-reply: template {d.auto_reply}{src('auto_reply')}")
    elif d.auto_reply_suppressed:
        lines.append(f"auto-reply: suppressed ({d.auto_reply_suppressed}){src('auto_reply')}")
    lines.append(f"fired: {', '.join(d.fired) or '(no rule)'}")
    if d.stopped_by:
        lines.append(f"stopped by: {d.stopped_by}")
    return lines
