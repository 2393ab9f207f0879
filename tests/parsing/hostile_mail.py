"""Hostile mail families for the cost-bound tests and bench/hostile.py (issue 14).

Each generator takes a target size in bytes and returns a whole message of about that size
built to hit one costly path: a renderer or sanitiser that is quadratic in nesting, a quote
prefix repeated per level, a header decoder, the MIME tree, or a regex that backtracks.
"""

from __future__ import annotations

from collections.abc import Callable

HEAD = ("From: Mallory <mallory@attacker.example>\r\n"
        "Date: Mon, 8 Jan 2024 10:00:00 +0000\r\nMessage-ID: <hostile@attacker.example>\r\nMIME-Version: 1.0\r\n")


def _mail(body: str, ctype: str = "text/html; charset=utf-8", extra: str = "", subject: str = "hostile",
          to: str = "inbox@acme.mail.test") -> bytes:
    return (f"{HEAD}To: {to}\r\nSubject: {subject}\r\n{extra}Content-Type: {ctype}\r\n\r\n{body}\r\n").encode()


def html_unclosed_divs(size: int) -> bytes:
    """``<div>``×N then ``</x>``×N: every end tag searched the whole open-element stack."""
    n = size // 9
    return _mail("<div>" * n + "</x>" * n)


def html_deep_nesting(size: int) -> bytes:
    """Properly nested ``<div><span>`` pairs N deep around some text."""
    n = size // 26
    return _mail("<div><span>" * n + "deep" + "</span></div>" * n)


def quote_bomb(size: int) -> bytes:
    """N nested ``<blockquote>`` then N lines: each line was prefixed with ``> `` per level."""
    n = size // 20
    return _mail("<blockquote>" * n + "line<br>" * n)


def encoded_word_subject(size: int) -> bytes:
    """A Subject made of N RFC 2047 words, folded (the stdlib decoder is quadratic in their count)."""
    n = size // 20
    return _mail("body", "text/plain; charset=utf-8", subject="\r\n ".join(["=?utf-8?q?caf=C3=A9?="] * n))


def many_mime_parts(size: int) -> bytes:
    """multipart/mixed with N small text parts."""
    n = size // 60
    part = "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\npart text\r\n"
    return _mail(part * n + "--b--", "multipart/mixed; boundary=b")


def deep_mime_nesting(size: int) -> bytes:
    """N nested multipart/mixed parts, each with its own boundary."""
    n = size // 90
    opening = "".join(f"--b{i}\r\nContent-Type: multipart/mixed; boundary=b{i + 1}\r\n\r\n" for i in range(n))
    closing = "".join(f"--b{i}--\r\n" for i in range(n, -1, -1))
    leaf = f"--b{n}\r\nContent-Type: text/plain\r\n\r\ninnermost\r\n"
    return _mail(opening + leaf + closing, "multipart/mixed; boundary=b0")


def long_line(size: int) -> bytes:
    """One body line without a newline, mixing words, spaces, colons and digits."""
    return _mail(("On 1 a@b wrote:  " * (size // 17 + 1))[:size], "text/plain; charset=utf-8")


def many_addresses(size: int) -> bytes:
    """To and Cc with N addresses each, half of them broken so the slow parsers get the list."""
    n = size // 60
    to = ",\r\n ".join(f"User {i} <user{i}@customer.example>" for i in range(n))
    cc = ",\r\n ".join(f"\"Odd, {i}\" <odd{i}@customer> (comment)" for i in range(n))
    return _mail("body", "text/plain", extra=f"Cc: {cc}\r\n", to=to)


def many_references(size: int) -> bytes:
    """References with N message ids."""
    n = size // 30
    refs = "\r\n ".join(f"<ref{i}@thread.example>" for i in range(n))
    return _mail("body", "text/plain", extra=f"References: {refs}\r\nIn-Reply-To: <ref0@thread.example>\r\n")


def html_many_attributes(size: int) -> bytes:
    """One tag with N attributes, and N entities in the text."""
    n = size // 20
    attrs = " ".join(f"a{i}=\"v\"" for i in range(n))
    return _mail(f"<div {attrs}>" + "&amp;&#65;" * (n // 2) + "</div>")


def plain_quote_ladder(size: int) -> bytes:
    """Plain text whose lines are quoted ever deeper, with quote-header-like lines between."""
    lines = []
    total, depth = 0, 0
    while total < size:
        depth += 1
        line = "> " * min(depth, 200) + f"On Mon {depth} someone@example.com wrote:"
        lines.append(line)
        total += len(line) + 1
    return _mail("\n".join(lines), "text/plain; charset=utf-8")


def non_text_codecs(size: int) -> bytes:
    """Encoded words and parts naming codecs that are not text encodings (hex, base64, rot13, zlib...)."""
    n = size // 120
    parts = "".join(f"--b\r\nContent-Type: text/plain; charset={codec}\r\n\r\nplain body {i}\r\n"
                    for i in range(n) for codec in [_CODECS[i % len(_CODECS)]])
    subject = " ".join(f"=?{codec}?q?41?=" for codec in _CODECS)
    return _mail(parts + "--b--", "multipart/mixed; boundary=b", subject=subject)


_CODECS = ["hex", "base64", "rot13", "zlib", "bz2", "uu", "quopri", "punycode", "idna", "undefined", "no-such"]

FAMILIES: dict[str, Callable[[int], bytes]] = {
    "html-unclosed-divs": html_unclosed_divs,
    "html-deep-nesting": html_deep_nesting,
    "quote-bomb": quote_bomb,
    "encoded-word-subject": encoded_word_subject,
    "many-mime-parts": many_mime_parts,
    "deep-mime-nesting": deep_mime_nesting,
    "long-line": long_line,
    "many-addresses": many_addresses,
    "many-references": many_references,
    "html-many-attributes": html_many_attributes,
    "plain-quote-ladder": plain_quote_ladder,
    "non-text-codecs": non_text_codecs,
}
