"""``postroom parse``: print what the parsing stage makes of a message.

Exit status: 0 when every file parsed, 1 when at least one could not be read
or parsed (it still gets its line, with an ``"error"`` key, in JSON mode).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from postroom.model import ParsedMessage
from postroom.parsing import ParseFailed, parse, parsed_to_json


def register(group: click.Group) -> None:
    group.add_command(parse_command)


@click.command("parse")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON (JSON Lines for a directory).")
def parse_command(path: Path, as_json: bool) -> None:
    """Parse FILE.eml (or every file in DIR) and print the result."""
    is_dir = path.is_dir()
    files = sorted(p for p in path.iterdir() if p.is_file()) if is_dir else [path]
    failed = 0
    for file in files:
        result = _parse_file(file)
        failed += "error" in result
        if as_json:
            if is_dir:
                result["file"] = str(file)
            click.echo(json.dumps(result, ensure_ascii=False))
        else:
            click.echo(_summary(file, result, is_dir))
    if failed:
        sys.exit(1)


def _parse_file(file: Path) -> dict[str, Any]:
    """The JSON object for one file, or ``{"error": ...}``; never raises."""
    try:
        parsed: ParsedMessage = parse(file.read_bytes())
    except ParseFailed as exc:
        return {"error": f"parse failed: {exc.reason}"}
    except OSError as exc:
        return {"error": f"unreadable: {exc.strerror or exc}"}
    except Exception as exc:  # a parser bug must not stop a directory run
        return {"error": f"internal error: {type(exc).__name__}: {exc}"}
    return parsed_to_json(parsed)


def _addr(value: dict[str, str] | None) -> str:
    if not value:
        return "-"
    return f"{value['name']} <{value['address']}>" if value["name"] else value["address"]


def _summary(file: Path, r: dict[str, Any], with_name: bool) -> str:
    head = [f"== {file}"] if with_name else []
    if "error" in r:
        return "\n".join([*head, f"error: {r['error']}"])
    lines = [*head, *_header_lines(r), *(_attachment_line(att) for att in r["attachments"]), *_verdict_lines(r),
             "", "--- reply ---", r["reply_text"], *_rest_lines(r)]
    return "\n".join(lines) + "\n"


def _header_lines(r: dict[str, Any]) -> list[str]:
    lines = [
        f"Message-ID: {r['message_id'] or '-'}",
        f"Date:       {r['date']}{' (fallback)' if r['date_is_fallback'] else ''}",
        f"From:       {_addr(r['from'])}",
        f"To:         {', '.join(_addr(a) for a in r['to']) or '-'}",
    ]
    if r["cc"]:
        lines.append(f"Cc:         {', '.join(_addr(a) for a in r['cc'])}")
    lines.append(f"Subject:    {r['subject']}")
    return lines


def _attachment_line(att: dict[str, Any]) -> str:
    flags = f" [{', '.join(att['flags'])}]" if att["flags"] else ""
    kind = "inline" if att["inline"] else "attached"
    return f"Attachment: {att['filename']} ({att['content_type']}, {att['size']} bytes, {kind}){flags}"


def _verdict_lines(r: dict[str, Any]) -> list[str]:
    """What the parser recognised the message as: auto-reply, bounce, forward; and what was wrong with it."""
    lines = []
    if r["auto_reply"]:
        lines.append(f"Auto-reply: {r['auto_reply']['reason']}")
    if r["bounce"]:
        b = r["bounce"]
        lines.append(f"Bounce:     permanent {b['permanent']} temporary {b['temporary']} "
                     f"original {b['original_message_id'] or '-'}")
    if r["forward"]:
        f = r["forward"]
        lines.append(f"Forward of: {_addr(f['from'])}, {f['date'] or '-'}, {f['subject']!r}")
    if r["defects"]:
        lines.append(f"Defects:    {', '.join(r['defects'])}")
    return lines


def _rest_lines(r: dict[str, Any]) -> list[str]:
    """The signature in full; the quoted text only counted."""
    lines = []
    if r["signature"]:
        lines += ["--- signature ---", r["signature"]]
    if r["quoted_text"]:
        lines.append(f"--- quoted: {len(r['quoted_text'].splitlines())} lines ---")
    return lines
