"""The ``postroom`` command: one click group, one module per command family, imported on demand.

Each command module exposes ``register(group)``. ``COMMANDS`` names, for
every top-level command, the modules that define it or add subcommands to
it, so ``postroom tenant list`` imports the tenant module and what it needs,
not the HTTP app, the PDF renderer or the AWS SDK (a CLI start used to
import all of them). ``tests/cli/test_lazy.py`` checks the table against
what the modules register.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from postroom.cli.failures import describe
from postroom.cli.quiet import quiet_parser_generator

quiet_parser_generator()

_SERVE, _OUTBOUND, _CONVERSATIONS, _INGRESS = (
    "postroom.cli.serve", "postroom.cli.outbound", "postroom.cli.conversations", "postroom.cli.ingress")
COMMANDS: dict[str, tuple[str, ...]] = {
    "apikey": ("postroom.cli.apikey",),
    "contact": ("postroom.cli.contact",),
    "conversations": (_CONVERSATIONS,),
    "inbox": (_CONVERSATIONS,),
    "ingest": ("postroom.cli.ingest",),
    "init": (_SERVE,),
    "mailbox": ("postroom.cli.mailbox",),
    "note": (_OUTBOUND,),
    "outbound": (_OUTBOUND,),
    "parse": ("postroom.cli.parse",),
    "queue": ("postroom.cli.queue",),
    "reply": (_OUTBOUND,),
    "rules": ("postroom.cli.rules",),
    "serve": (_SERVE,),
    "ses-inbound": (_INGRESS,),
    "team": ("postroom.cli.team",),
    "tenant": ("postroom.cli.tenant", _INGRESS),
    "user": (_OUTBOUND, "postroom.cli.team"),
    "worker": (_SERVE,),
}


class LazyGroup(click.Group):
    """A group whose commands are registered by their modules the first time one of them is asked for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loaded: set[str] = set()

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        for module in COMMANDS.get(cmd_name, ()):
            if module not in self.loaded:
                importlib.import_module(module).register(self)
                self.loaded.add(module)
        return self.commands.get(cmd_name)


def _debug(_ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    """Set POSTROOM_DEBUG so that ``main`` and the processes this command starts show tracebacks."""
    if value:
        os.environ["POSTROOM_DEBUG"] = "1"
    return value


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_file", type=click.Path(dir_okay=False), envvar="POSTROOM_CONFIG",
              help="TOML config file; environment variables override it.")
@click.option("--debug", is_flag=True, is_eager=True, expose_value=False, callback=_debug,
              help="Show Python tracebacks instead of one-line errors (also POSTROOM_DEBUG=1).")
@click.pass_context
def cli(ctx: click.Context, config_file: str | None) -> None:
    """postroom: email gateway and mail pipeline for customer-conversation portals."""
    if ctx.obj is None:
        ctx.obj = {}
    ctx.obj["config_file"] = config_file


def main() -> None:
    """Entry point: any error is one line on stderr, exit code 1; usage errors 2; tracebacks only when debugging.

    ``state`` is the root context's ``obj``: it outlives the context, so the
    settings the command loaded can name the URL or folder that failed.
    """
    state: dict[str, Any] = {}
    try:
        cli.main(standalone_mode=False, obj=state)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except Exception as exc:
        if os.environ.get("POSTROOM_DEBUG", "") not in ("", "0"):
            raise
        click.echo(f"error: {describe(exc, state.get('settings'))}", err=True)
        sys.exit(1)
