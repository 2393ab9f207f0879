"""Random and mutated MIME: parse gives a ParsedMessage or a clean ParseFailed, nothing else."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.parsing.conftest import FIXTURES

from postroom.model import ParsedMessage
from postroom.parsing import ParseFailed, parse, parsed_to_json

SEEDS = [p.read_bytes() for p in sorted(FIXTURES.glob("*.eml"))]
TOKENS = [b"\n", b"\r\n", b"--", b"boundary=", b"Content-Type: multipart/mixed; boundary=x\n", b"=?utf-8?q?=C3?=",
          b"charset=\"bogus-8\"", b"Content-Transfer-Encoding: base64\n", b"\xff\xfe", b"filename*=UTF-8''%FF",
          b"<", b">", b",", b":", b"\x00", b"From: ", b"Date: 99 Foo 2024\n", b"message/rfc822", b"=\n", b"begin 644"]
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(raw: bytes) -> None:
    try:
        result = parse(raw)
    except ParseFailed as exc:
        assert exc.reason
        return
    assert isinstance(result, ParsedMessage)
    parsed_to_json(result)


@SETTINGS
@given(st.binary(max_size=2000))
def test_random_bytes(raw):
    _check(raw)


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        pos = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["insert", "delete", "flip", "truncate"]))
        if action == "insert":
            data[pos:pos] = draw(st.sampled_from(TOKENS))
        elif action == "delete":
            del data[pos : pos + draw(st.integers(1, 200))]
        elif action == "flip" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif action == "truncate":
            del data[pos:]
    return bytes(data)


@SETTINGS
@given(mutated())
def test_mutated_fixtures(raw):
    _check(raw)


@SETTINGS
@given(st.lists(st.sampled_from(TOKENS) | st.text(max_size=20).map(str.encode), max_size=60))
def test_token_soup(parts):
    _check(b"From: a@b.c\nSubject: x\n" + b"".join(parts))


def test_not_a_message_fails_cleanly():
    for raw in (b"", b"   \n", b"\n\njust a body"):
        try:
            parse(raw)
        except ParseFailed as exc:
            assert exc.reason
        else:
            raise AssertionError(f"expected ParseFailed for {raw!r}")
