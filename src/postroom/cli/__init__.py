"""The ``postroom`` command: one click group, one module per command family.

Each module in COMMAND_MODULES exposes ``register(group)``; keeping the list
here lets a command family be added with one line and no import side effects.
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

COMMAND_MODULES = (
    "postroom.cli.serve",
    "postroom.cli.tenant",
    "postroom.cli.ingest",
    "postroom.cli.queue",
    "postroom.cli.parse",
    "postroom.cli.rules",
    "postroom.cli.apikey",
    "postroom.cli.conversations",
    "postroom.cli.outbound",
    "postroom.cli.team",
    "postroom.cli.contact",
    "postroom.cli.mailbox",
    "postroom.cli.ingress",
)


def _debug(_ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    """Set POSTROOM_DEBUG so that ``main`` and the processes this command starts show tracebacks."""
    if value:
        os.environ["POSTROOM_DEBUG"] = "1"
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(cli)


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
