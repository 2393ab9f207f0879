"""The CLI imports a command's modules only when that command runs, and its table says every module's commands."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys

import click

import postroom.cli
from postroom.cli import COMMANDS, cli


def _tree(command: click.Command, ctx: click.Context) -> dict:
    if not isinstance(command, click.Group):
        return {}
    return {name: _tree(command.get_command(ctx, name), ctx)  # type: ignore[arg-type]
            for name in command.list_commands(ctx)}


def test_the_table_names_every_command_each_module_registers() -> None:
    eager = click.Group()
    modules = [m.name for m in pkgutil.iter_modules(postroom.cli.__path__, "postroom.cli.")]
    for name in modules:
        module = importlib.import_module(name)
        if hasattr(module, "register"):
            module.register(eager)
    ctx = click.Context(cli)
    assert _tree(cli, ctx) == _tree(eager, click.Context(eager))
    assert set(COMMANDS) == set(eager.commands)


def test_a_storage_command_does_not_import_the_web_app_the_pdf_renderer_or_aws(tmp_path) -> None:
    probe = ("import sys\nfrom postroom.cli import cli\n"
             "try:\n    cli.main(['tenant', 'list', '--json'], standalone_mode=False)\nfinally:\n"
             "    heavy = sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in "
             "('fastapi', 'fpdf', 'uvicorn', 'boto3')})\n    print(heavy, file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env={"POSTROOM_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stderr.strip().splitlines()[-1].replace("'", '"')) == []
