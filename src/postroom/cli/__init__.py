"""The ``postroom`` command: one click group, one module per command family.

Each module in COMMAND_MODULES exposes ``register(group)``; keeping the list
here lets a command family be added with one line and no import side effects.
"""

from __future__ import annotations

import importlib
import sys

import click

from postroom.errors import PostroomError

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
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_file", type=click.Path(dir_okay=False), envvar="POSTROOM_CONFIG",
              help="TOML config file; environment variables override it.")
@click.pass_context
def cli(ctx: click.Context, config_file: str | None) -> None:
    """postroom: email gateway and mail pipeline for customer-conversation portals."""
    ctx.obj = {"config_file": config_file}


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(cli)


def main() -> None:
    """Entry point: a PostroomError is one clear line on stderr and exit code 1; usage errors 2."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except PostroomError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
