"""``postroom parse``: print what the parsing stage makes of a message."""

from __future__ import annotations

import json
from pathlib import Path

import click

from postroom.model import to_jsonable
from postroom.parsing import parse


def register(group: click.Group) -> None:
    group.add_command(parse_command)


@click.command("parse")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON (JSON Lines for a directory).")
def parse_command(path: Path, as_json: bool) -> None:
    """Parse FILE.eml (or every file in DIR) and print the result."""
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for file in files:
        parsed = to_jsonable(parse(file.read_bytes()))
        if path.is_dir():
            parsed["file"] = str(file)
        click.echo(json.dumps(parsed, ensure_ascii=False) if as_json else json.dumps(parsed, indent=2))
