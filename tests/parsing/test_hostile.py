"""Hostile mail costs the parser a small constant times its size, and loses nothing silently (issue 14).

Growth is checked as CPU time at 4x the size (a linear stage ~4x, the quadratic ones were 14-16x);
caps are checked exactly against postroom.parsing.limits.
"""

from __future__ import annotations

import email.header
import email.message
import json
import time
import tracemalloc

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.parsing.conftest import FIXTURES
from tests.parsing.hostile_mail import _CODECS, FAMILIES, HEAD

from postroom.model import ParsedMessage
from postroom.parsing import addresses, encoded_words, html, limits, mime, parse

SMALL = 24_000


def _cpu(raw: bytes) -> float:
    """Best of three CPU times of parsing ``raw`` (the machine is shared)."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        parse(raw)
        best = min(best, time.process_time() - start)
    return best


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_parse_cost_grows_linearly(family: str) -> None:
    build = FAMILIES[family]
    small, large = _cpu(build(SMALL)), _cpu(build(4 * SMALL))
    assert large / max(small, 0.002) < 8, f"{family}: {small:.4f} s -> {large:.4f} s at 4x the size"


def _peak_memory(raw: bytes) -> int:
    """Peak bytes allocated by Python while parsing ``raw``."""
    tracemalloc.start()
    try:
        parse(raw)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_parse_memory_grows_linearly_and_stays_a_small_multiple(family: str) -> None:
    """Twice the input, at most about twice the peak, and the peak a small multiple of the input (a tag with
    many attributes once took over a hundred times its size: regex restore points per character)."""
    build = FAMILIES[family]
    small, large = build(2 * SMALL), build(4 * SMALL)
    small_peak, large_peak = _peak_memory(small), _peak_memory(large)
    assert large_peak / small_peak < 2.6, f"{family}: {small_peak} -> {large_peak} bytes at 2x the size"
    assert large_peak < 40 * len(large), f"{family}: peak {large_peak / len(large):.0f}x the input"


def _text_fields(parsed: ParsedMessage) -> int:
    return sum(len(v or "") for v in (parsed.text, parsed.html, parsed.reply_text, parsed.quoted_text,
                                      parsed.signature, parsed.subject))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_derived_text_is_bounded_by_the_raw_size(family: str) -> None:
    raw = FAMILIES[family](4 * SMALL)
    parsed = parse(raw)
    assert _text_fields(parsed) <= 5 * limits.derived_limit(len(raw))
    assert all(len(v) <= limits.MAX_HEADER_TEXT for _, v in parsed.headers)


def _quote_bomb(lines: int, depth: int = 50) -> bytes:
    """The issue's bomb with one-character lines: each became 2 x depth characters of '> '."""
    body = "<blockquote>" * depth + "x<br>" * lines
    return f"{HEAD}To: inbox@acme.mail.test\r\nSubject: bomb\r\nContent-Type: text/html\r\n\r\n{body}\r\n".encode()


def test_quote_bomb_is_capped_and_flagged() -> None:
    parsed = parse(_quote_bomb(100_000))
    html_size = len("<blockquote>" * 50 + "x<br>" * 100_000) + 2
    assert len(parsed.text) <= limits.derived_limit(html_size)
    assert len(parsed.text) > limits.derived_limit(html_size) - 100  # cut, not lost
    assert "text" in parsed.truncated
    assert any(d.startswith("text-truncated:") for d in parsed.defects)
    assert any(d.startswith("quote-depth-capped:") for d in parsed.defects)
    deepest = max(len(line) - len(line.lstrip("> ")) for line in parsed.text.splitlines())
    assert deepest == 2 * limits.MAX_QUOTE_DEPTH
    assert len(parsed.html or "") <= limits.derived_limit(html_size)


def test_html_render_cap_is_exact() -> None:
    bomb = "<blockquote>" * 500 + "x<br>" * 5000
    rendered = html.render(bomb, limit=1000)
    assert rendered.truncated and len(rendered.text) == 1000
    assert not html.render("<p>short</p>", limit=1000).truncated


def test_unclosed_divs_keep_their_text_and_are_flattened() -> None:
    body = "<div>" * 5000 + "kept text" + "</x>" * 5000
    raw = f"{HEAD}To: a@b.example\r\nSubject: divs\r\nContent-Type: text/html\r\n\r\n{body}\r\n".encode()
    parsed = parse(raw)
    assert parsed.text == "kept text"
    assert "kept text" in (parsed.html or "")
    assert (parsed.html or "").count("<div>") == limits.MAX_HTML_DEPTH
    assert any(d.startswith("html-flattened:") for d in parsed.defects)


def test_deep_mime_nesting_becomes_one_attachment() -> None:
    parsed = parse(FAMILIES["deep-mime-nesting"](200_000))
    assert "mime" in parsed.truncated
    assert len(parsed.attachments) == 1
    assert b"innermost" in parsed.attachments[0].data
    assert parsed.attachments[0].content_type == "application/octet-stream"


def test_long_lists_are_cut_and_flagged() -> None:
    parsed = parse(FAMILIES["many-references"](400_000))
    assert len(parsed.references) == 1000
    assert parsed.references[0] == "<ref0@thread.example>"
    assert {"references", "headers"} <= set(parsed.truncated)
    parsed = parse(FAMILIES["many-addresses"](200_000))
    assert {"to", "cc"} <= set(parsed.truncated)
    assert parsed.to[0].address == "user0@customer.example"


@pytest.mark.parametrize("codec", _CODECS)
def test_non_text_codec_names_read_as_unknown_charsets(codec: str) -> None:
    raw = (f"{HEAD}To: a@b.example\r\nSubject: =?{codec}?q?caf=E9?= ok\r\nContent-Type: text/plain; charset={codec}"
           f"\r\nContent-Disposition: attachment; filename*={codec}''r%E9sum%E9.txt\r\n\r\nplain body text\r\n"
           ).encode()
    parsed = parse(raw)
    assert parsed.subject == "café ok"
    assert parsed.attachments[0].filename == "résumé.txt"
    assert parsed.attachments[0].data.strip() == b"plain body text"
    raw = raw.replace(b"Content-Disposition", b"X-Disposition")
    parsed = parse(raw)
    assert parsed.text.strip() == "plain body text"
    assert not any("failed" in d for d in parsed.defects)


def test_cli_parse_of_a_hostile_message(tmp_path) -> None:
    file = tmp_path / "bomb.eml"
    file.write_bytes(_quote_bomb(100_000))
    started = time.process_time()
    result = CliRunner().invoke(cli_group(), ["parse", "--json", str(file)])
    assert result.exit_code == 0, result.output[-500:]
    assert time.process_time() - started < 10
    data = json.loads(result.output)
    assert "text" in data["truncated"]
    assert len(data["text"]) <= limits.derived_limit(len(file.read_bytes()))


def cli_group():
    from postroom.cli import cli

    return cli


def test_fixtures_are_not_capped(parsed: dict[str, ParsedMessage]) -> None:
    assert {name: p.truncated for name, p in parsed.items() if p.truncated} == {}
    capped = ("-truncated:", "quote-depth-capped", "html-flattened")
    assert {name: p.defects for name, p in parsed.items() if any(c in d for d in p.defects for c in capped)} == {}
    assert len(list(FIXTURES.glob("*.eml"))) == len(parsed)


_HEADER_TEXT = st.lists(st.sampled_from(["=?", "?=", "?", "=", "q", "B", "utf-8", " ", "\n", "\r\n", "\t", "a", "YQ",
                                         "=41", "_", "é", "中", "?q?", "=?utf-8?q?", "=?x?b?", "YWJj", "==", "\x0b"]),
                        max_size=16).map("".join)


def _outcome(fn, value):
    try:
        return fn(value)
    except email.errors.HeaderParseError:
        return "HeaderParseError"


@settings(max_examples=400, deadline=None)
@given(_HEADER_TEXT)
def test_linear_decode_header_matches_the_stdlib(value: str) -> None:
    assert _outcome(encoded_words.decode_header, value) == _outcome(email.header.decode_header, value)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([";", '"', '\\"', "\\", "a", "=", " ", "b*", "*0"]), max_size=16).map("".join))
def test_linear_params_match_the_stdlib(value: str) -> None:
    assert mime._split_params(value) == email.message._parseparam(value)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["a", "@", ".", "-", " ", "b.c", "'", "!", "<", "x@y", ","]), max_size=16).map("".join))
def test_linear_addr_specs_match_the_regex(value: str) -> None:
    assert addresses.addr_specs(value) == addresses._ADDR_SPEC.findall(value)


def test_quadratic_headers_and_params_are_linear() -> None:
    """The stdlib paths replaced here, at a size where they took seconds."""
    words = " ".join(["=?utf-8?q?a?="] * 20_000)
    params = "text/plain" + "; a=b" * 40_000
    start = time.process_time()
    assert encoded_words.decode_header(words)[0][0] == b"a" * 20_000
    assert len(mime._split_params(params)) == 40_001
    assert addresses.addr_specs("'" * 50_000 + "!") == []
    assert time.process_time() - start < 2


START_TAGS = [
    '<div a0="v" a1=\'w\' a2=x a3 class="gmail_quote">text</div>', "<br/>x<br />y<img alt=\"a\" src=cid:x/>",
    '<div id=divRplyFwdMsg style="border-top:solid #E1E1E1 1.0pt">q</div>', "<p a=\"unclosed>text", "<p a=b/",
    "<blockquote type=cite>x</blockquote><a/b c='d'>e</a>", "<x a = = b c=\"d\"e>f", "<div " + "a=1 " * 500 + ">t",
    "<p\tclass=yahoo_quoted\n>q</p>", "<img alt='one'  / >", "<p <b>x</b>", "<a href=\"x\"/ >y</a>",
]


class _StdlibScanner(html._TextRenderer):
    """The renderer with the standard library's own start-tag scanner."""

    check_for_whole_start_tag = html.HTMLParser.check_for_whole_start_tag


@pytest.mark.parametrize("markup", START_TAGS)
def test_possessive_start_tag_scanner_reads_tags_as_the_stdlib_does(markup: str) -> None:
    assert html._START_TAG_END.pattern != html.html_parser.locatestarttagend_tolerant.pattern  # made possessive
    ours, theirs = html._TextRenderer(mark_quotes=True), _StdlibScanner(mark_quotes=True)
    for renderer in (ours, theirs):
        renderer.feed(markup)
        renderer.close()
    assert ours.text(10_000) == theirs.text(10_000)
    assert ours.out == theirs.out
