"""Shared CLI plumbing: settings and app from the context, tables, JSON, ages."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click

from postroom.app import App
from postroom.model import to_jsonable
from postroom.settings import Settings, load_settings


def settings_of(ctx: click.Context) -> Settings:
    """Load the settings and keep them on the root context, where ``main`` finds them to word an error."""
    root = ctx.find_root()
    if root.obj is None:
        root.obj = {}
    settings = load_settings(root.obj.get("config_file"))
    root.obj["settings"] = settings
    return settings


def open_app(ctx: click.Context) -> App:
    """Open (and migrate) the app; closed automatically when the command ends."""
    app = App.open(settings_of(ctx))
    ctx.call_on_close(app.close)
    return app


def echo_json(value: Any) -> None:
    click.echo(json.dumps(to_jsonable(value), ensure_ascii=False, indent=None, default=str))


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Left-aligned columns sized to their content, for people reading a terminal."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            click.echo("  ".join("-" * width for width in widths))


def age(when: datetime | None, now: datetime | None = None) -> str:
    """Human age: 42s, 5m, 3h, 2d."""
    if when is None:
        return "-"
    seconds = max(0, int(((now or datetime.now(UTC)) - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
