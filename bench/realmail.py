"""How stable parsing is when the same mail arrives in another shape (issue 17).

Takes every single-part text/plain fixture in fixtures/emails and writes variants of it the way other
clients and relays would: rewrapped at 72/76/78 columns (quoted lines keep their "> " prefix, so a
wrapped attribution spans two or three lines), CRLF and LF, quoted-printable, HTML-only (paragraphs,
<br> and <blockquote> for quoted lines), and each quote header verb, forward separator and
header-block label translated into every language of parsing/languages.yaml. Each variant's answer
is compared with the original's, per field, after whitespace is collapsed (rewrapping only moves
line breaks) and with the same translation applied to the original's answer.

Prints, per field and variant family, how often the field stays identical. Run by hand:
    .venv/bin/python bench/realmail.py
"""

from __future__ import annotations

import email
import email.policy
import html
import quopri
import re
import sys
import textwrap
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from postroom.parsing import lexicon, parse

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "emails"
FIELDS = ("forward sender", "subject", "reply text", "quoted text", "signature", "bounce recipients")


def answer(raw: bytes, translate: Callable[[str], str] = lambda s: s) -> dict[str, str]:
    """The fields compared, whitespace collapsed."""
    msg = parse(raw)
    fwd = msg.forward

    def norm(text: str) -> str:
        return " ".join(translate(text).replace(">", " ").split())

    bounce = msg.bounce
    return {
        "forward sender": fwd.sender.address if fwd and fwd.sender else "",
        "subject": norm(fwd.subject if fwd else msg.subject),
        "reply text": norm(msg.reply_text),
        "quoted text": norm(msg.quoted_text),
        "signature": norm(msg.signature),
        "bounce recipients": " ".join(bounce.permanent + bounce.temporary) if bounce else "",
    }


def split(raw: bytes) -> tuple[str, str] | None:
    """Header block and decoded body of a single-part text/plain fixture (None for other mail)."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    if msg.is_multipart() or msg.get_content_type() != "text/plain":
        return None
    payload = msg.get_payload(decode=True) or b""
    body = payload.decode(msg.get_content_charset() or "utf-8", errors="replace").replace("\r\n", "\n")
    keep = [(k, v) for k, v in msg.items() if k.lower() not in ("content-type", "content-transfer-encoding",
                                                                  "mime-version")]
    return "\n".join(f"{k}: {v}" for k, v in keep), body


def build(head: str, body: str, ctype: str = "text/plain", cte: str = "8bit", newline: str = "\n") -> bytes:
    encoded = quopri.encodestring(body.encode("utf-8")).decode("ascii") if cte == "quoted-printable" else body
    text = f"{head}\nMIME-Version: 1.0\nContent-Type: {ctype}; charset=utf-8\nContent-Transfer-Encoding: {cte}\n\n"
    return (text + encoded).replace("\n", newline).encode("utf-8")


def rewrap(body: str, width: int) -> str:
    out = []
    for line in body.split("\n"):
        prefix = re.match(r"^(?:> ?)*", line).group(0)
        rest = line[len(prefix):]
        if len(line) <= width or not rest.strip():
            out.append(line)
            continue
        out.extend(textwrap.wrap(rest, width - len(prefix), initial_indent=prefix, subsequent_indent=prefix,
                                 break_long_words=False, break_on_hyphens=False))
    return "\n".join(out)


def to_html(body: str) -> str:
    parts, quoted = [], False
    for line in body.split("\n"):
        is_quoted = line.startswith((">", "  ", "\t"))  # indentation is a blockquote in HTML too
        if is_quoted != quoted:
            parts.append("<blockquote>" if is_quoted else "</blockquote>")
            quoted = is_quoted
        parts.append(html.escape(re.sub(r"^(?:> ?)+|^\s+", "", line)) + "<br>")
    if quoted:
        parts.append("</blockquote>")
    return "<html><body><div>" + "\n".join(parts) + "</div></body></html>"


def _role_words() -> dict[str, list[tuple[str, str]]]:
    """Per table key ('wrote', 'forward', 'label:from' …): (language, first word) of every language."""
    out: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for code, entry in lexicon.table().items():
        out["wrote"].append((code, entry["wrote"][0]))
        out["forward"].append((code, entry["forward"][0]))
        for role, words in entry["labels"].items():
            out[f"label:{role}"].append((code, words[0]))
    return out


def translator(target: str) -> Callable[[str], str]:
    """Every verb, separator phrase and line-opening label of any language replaced by ``target``'s."""
    words = _role_words()
    table = lexicon.table()
    verbs = sorted({w for e in table.values() for w in e["wrote"]}, key=len, reverse=True)
    seps = sorted({w for e in table.values() for w in e["forward"]}, key=len, reverse=True)
    verb_rx = re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, verbs)) + r")(?=\s*[:：])")
    sep_rx = re.compile(r"(?im)^([-=_ ]*)(?:" + "|".join(map(re.escape, seps)) + r")(?=[-=_ :]*$)")
    target_verb = dict(words["wrote"])[target]
    target_sep = dict(words["forward"])[target]

    def label_line(match: re.Match[str]) -> str:
        found = lexicon.label_of(match.group(2))
        if not found:
            return match.group(0)
        return f"{match.group(1)}{dict(words['label:' + found[0]])[target]}: {found[1]}"

    def translate(text: str) -> str:
        text = verb_rx.sub(target_verb, text)
        text = sep_rx.sub(lambda m: m.group(1) + target_sep, text)
        return re.sub(r"(?m)^((?:> ?)*[*_]*)([^\n:：]{1,30}[:：][^\n]*)$", label_line, text)

    return translate


def variants(head: str, body: str) -> list[tuple[str, bytes, Callable[[str], str]]]:
    same: Callable[[str], str] = lambda s: s  # noqa: E731
    out = [("lf", build(head, body), same), ("crlf", build(head, body, newline="\r\n"), same),
           ("quoted-printable", build(head, body, cte="quoted-printable"), same),
           ("html-only", build(head, to_html(body), ctype="text/html"), same)]
    out += [(f"wrap{w}", build(head, rewrap(body, w)), same) for w in (72, 76, 78)]
    for code in lexicon.table():
        tr = translator(code)
        out.append(("translated", build(head, tr(body)), tr))
    return out


def main() -> int:
    stable: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    unstable: dict[str, list[str]] = defaultdict(list)
    for path in sorted(FIXTURES.glob("*.eml")):
        raw = path.read_bytes()
        parts = None if b"{{" in raw else split(raw)  # rules/threads templates are not mail
        if parts is None:
            continue
        head, body = parts
        for family, data, tr in variants(*parts):
            want = answer(build(head, body), tr)
            got = answer(data)
            if family == "html-only":  # rendering HTML drops the original's signature delimiter line
                want["signature"], got["signature"] = want["signature"].lstrip("- "), got["signature"].lstrip("- ")
            for field in FIELDS:
                if not want[field] and not got[field]:
                    continue
                cell = stable[(field, family)]
                cell[1] += 1
                cell[0] += want[field] == got[field]
                if want[field] != got[field] and len(unstable[field]) < 5:
                    unstable[field].append(f"{path.name} [{family}]: {got[field][:60]!r} != {want[field][:60]!r}")
    families = sorted({f for _, f in stable})
    print(f"{'field':<18}" + "".join(f"{f:>18}" for f in families) + f"{'all':>9}")
    worst = 100.0
    for field in FIELDS:
        cells = [stable.get((field, f), [0, 0]) for f in families]
        ok, n = sum(c[0] for c in cells), sum(c[1] for c in cells)
        pct = 100.0 * ok / n if n else 100.0
        worst = min(worst, pct)
        print(f"{field:<18}" + "".join(f"{f'{c[0]}/{c[1]}' if c[1] else '-':>18}" for c in cells) + f"{pct:>8.1f}%")
    print(f"least stable field: {worst:.1f}% identical to the original's answer")
    for field, lines in unstable.items():
        print(f"unstable {field}:")
        for line in lines:
            print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
