"""Bad input for ``postroom.parsing.parse``: a ParsedMessage or ParseFailed, within time and memory bounds.

Hypothesis generates broken headers, MIME trees and encodings; the crafted cases
are the classic parser killers (deep nesting, huge headers, NUL bytes, 10,000
attachments, zip of zips). The pipeline keeps what cannot be parsed as
``parse_failed`` rows with the raw bytes. Long atheris runs: bench/reliability.py.
"""

from __future__ import annotations

import io
import smtplib
import subprocess
import sys
import zipfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parse_budget import checked_parse
from sqlalchemy import select

from postroom.app import App
from postroom.service import Service
from postroom.storage import inbound
from postroom.storage.tables import InboundMessage
from postroom.testing import wait_until

MB = 1024 * 1024
FUZZ = settings(max_examples=100, deadline=timedelta(seconds=5), suppress_health_check=[HealthCheck.too_slow],
                database=None)
HEADER_NAMES = st.sampled_from(["From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
                                "Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "MIME-Version",
                                "Reply-To", "Sender", "Auto-Submitted", "X-Weird", "Received"])
NASTY = st.sampled_from([
    "=?utf-8?b?////?=", "=?x-unknown?q?abc?=", "=?utf-7?b?KwBBAC0-?=", "=?iso-8859-1?q?caf=E9?=", "=?utf-8?q?=FF=FE?=",
    "multipart/mixed; boundary=", 'multipart/mixed; boundary="', "text/plain; charset=\"x-\x00\"", "base64",
    "quoted-printable", "x-uuencode", "8bit", "<>", "<<<@>>>", "@", ",,,", "\x00", "\t", " ", "\r", "\xff\xfe",
    "attachment; filename*=utf-8''%FF%FE", "Thu, 31 Feb 2099 99:99:99 +9999", "a" * 2000,
])
header_value = st.one_of(NASTY, st.text(max_size=200), st.lists(NASTY, max_size=5).map(" ".join))


def _headers(pairs: list[tuple[str, str]]) -> bytes:
    return b"".join(f"{name}: {value}\r\n".encode("utf-8", "surrogateescape") for name, value in pairs)


@st.composite
def mime_tree(draw: st.DrawFn, depth: int = 0) -> bytes:
    """A MIME entity with random (often wrong) headers, bodies, encodings and boundaries."""
    boundary = draw(st.sampled_from(["b1", "b2", "", "--", "x" * 80, "b1\x00"]))
    headers = draw(st.lists(st.tuples(HEADER_NAMES, header_value), max_size=8))
    if depth < 3 and draw(st.booleans()):
        parts = draw(st.lists(mime_tree(depth + 1), max_size=4))
        body = b"".join(b"--" + boundary.encode() + b"\r\n" + p + b"\r\n" for p in parts)
        body += draw(st.sampled_from([b"--" + boundary.encode() + b"--\r\n", b"", b"--" + boundary.encode()]))
        headers.append(("Content-Type", f'multipart/{draw(st.sampled_from(["mixed", "alternative", "related"]))};'
                                        f' boundary="{boundary}"'))
    else:
        body = draw(st.one_of(st.binary(max_size=500), st.text(max_size=500).map(lambda t: t.encode("utf-8"))))
    return _headers(headers) + b"\r\n" + body


@FUZZ
@given(st.binary(max_size=4096))
def test_arbitrary_bytes(raw: bytes) -> None:
    checked_parse(raw, seconds=5)


@FUZZ
@given(mime_tree())
def test_broken_mime_trees_and_encodings(raw: bytes) -> None:
    checked_parse(raw, seconds=5)


@FUZZ
@given(st.lists(st.tuples(HEADER_NAMES, header_value), min_size=1, max_size=30), st.binary(max_size=300))
def test_broken_headers(pairs: list[tuple[str, str]], body: bytes) -> None:
    checked_parse(_headers(pairs) + b"\r\n" + body, seconds=5)


def _multipart_nest(levels: int) -> bytes:
    raw = b"Content-Type: text/plain\r\n\r\ninnermost\r\n"
    for level in range(levels):
        raw = (f'Content-Type: multipart/mixed; boundary="b{level}"\r\n\r\n--b{level}\r\n'.encode() + raw
               + f"\r\n--b{level}--\r\n".encode())
    return b"From: a@example.com\r\nSubject: deep\r\nMIME-Version: 1.0\r\n" + raw


def _rfc822_nest(levels: int) -> bytes:
    raw = b"From: inner@example.com\r\nSubject: inner\r\n\r\ninnermost\r\n"
    for _ in range(levels):
        raw = b"From: a@example.com\r\nContent-Type: message/rfc822\r\n\r\n" + raw
    return raw


def _attachments(count: int) -> bytes:
    parts = b"".join(f'--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; '
                     f'filename="f{i}.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\nQUJD{i:04d}\r\n'.encode()
                     for i in range(count))
    return b'From: a@example.com\r\nSubject: many\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n' + parts + \
        b"--b--\r\n"


def _zip_of_zips(levels: int) -> bytes:
    data = b"\0" * (8 * MB)  # compresses to a few KiB: a classic zip bomb layer
    for level in range(levels):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(f"layer{level}.{'zip' if level else 'bin'}", data)
        data = buffer.getvalue()
    import base64

    encoded = base64.encodebytes(data)
    return (b'From: a@example.com\r\nSubject: zip\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
            b'Content-Type: application/zip\r\nContent-Disposition: attachment; filename="bomb.zip"\r\n'
            b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + b"\r\n--b--\r\n")


HARD_CASES: dict[str, tuple[Callable[[], bytes], float, int | None]] = {
    # name: (input, seconds, peak traced memory in bytes; None: too slow to trace, 3 MB when measured)
    "multipart nested 1,000 deep": (lambda: _multipart_nest(1000), 5, None),
    "message/rfc822 nested 1,000 deep": (lambda: _rfc822_nest(1000), 5, 100 * MB),
    "one 2 MB header line": (lambda: b"From: a@example.com\r\nSubject: " + b"x" * 2 * MB + b"\r\n\r\nbody\r\n",
                             5, 200 * MB),
    "100,000 header fields": (lambda: b"From: a@example.com\r\n" + b"X-H: v\r\n" * 100_000 + b"\r\nbody\r\n",
                              5, 200 * MB),
    "NUL bytes everywhere": (lambda: b"From: a\x00@example.com\r\nSub\x00ject: \x00\x00\r\n\r\n" + b"\x00" * 100_000,
                             5, 100 * MB),
    "10,000 attachments": (lambda: _attachments(10_000), 10, 300 * MB),
    "zip of zips (8 MB of zeros, 5 layers)": (lambda: _zip_of_zips(5), 5, 100 * MB),
    "broken base64 and QP": (lambda: b"From: a@example.com\r\nContent-Type: text/plain; charset=utf-8\r\n"
                             b"Content-Transfer-Encoding: base64\r\n\r\n!!!!====\xff\xfe====QQ\r\n", 5, 50 * MB),
    "unknown and lying charsets": (lambda: b"From: a@example.com\r\nSubject: =?x-mac-klingon?q?=FF?=\r\n"
                                   b"Content-Type: text/plain; charset=utf-16\r\n\r\n\xff\xfe\xd8\x00abc", 5, 50 * MB),
}


def test_hard_cases_are_bounded_in_time_and_memory() -> None:
    """Time untraced; memory with tracemalloc (which slows parsing several times, so its own looser bound)."""
    over: list[str] = []
    for name, (build, seconds, peak_limit) in HARD_CASES.items():
        raw = build()
        timed = checked_parse(raw, seconds=seconds * 2)
        if timed.seconds > seconds:
            over.append(f"{name}: {timed.seconds:.1f} s")
        if peak_limit is not None:
            traced = checked_parse(raw, seconds=seconds * 10, measure_memory=True)
            if traced.peak_bytes > peak_limit:
                over.append(f"{name}: {traced.peak_bytes / MB:.0f} MB")
    assert over == []


@pytest.mark.parametrize("raw", [b"From: a@example.com\r\nSubject: =?utf\x00-8?q?a?=\r\n\r\nbody",
                                 b"From: =?x\x00?b?YQ==?= <a@example.com>\r\n\r\nb"])
def test_nul_in_encoded_word_charset(raw: bytes) -> None:
    checked_parse(raw, seconds=5)


def test_atheris_bounded_run(tmp_path: Path) -> None:
    """A few seconds of coverage-guided fuzzing (bench/reliability.py runs it longer)."""
    harness = Path(__file__).with_name("fuzz_parse_atheris.py")
    corpus = tmp_path / "corpus"  # empty: the fixture seed corpus takes seconds to replay (bench uses it)
    corpus.mkdir()
    result = subprocess.run([sys.executable, str(harness), "-max_total_time=2", "-timeout=10", "-rss_limit_mb=2048",
                             f"-artifact_prefix={tmp_path}/", str(corpus)], capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done" in result.stderr or "DONE" in result.stderr, result.stderr[-2000:]


def test_unparseable_mail_is_kept_as_parse_failed(service: Service, app: App,
                                                  smtp: Callable[[], smtplib.SMTP]) -> None:
    raw = b"\r\nno header at all, only a body\r\n"
    smtp().sendmail("a@example.com", ["inbox@acme.mail.test"], raw)

    def failed_rows() -> list:
        with app.session() as session:
            return inbound.list_inbound(session, status="parse_failed")

    [row] = wait_until(failed_rows, timeout=20)
    assert row.last_error and app.blobs.get(row.sha256) == raw
    with app.session() as session:
        assert session.scalar(select(InboundMessage.auth_results).where(InboundMessage.id == row.id)) is not None
