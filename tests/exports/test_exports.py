"""``postroom conversations export`` and the API's exports, on conversations built by the real service.

The PDF is read back with poppler's ``pdftotext`` (independent of fpdf2): every
script's sample is in it, or the visible ``[U+XXXX]`` marker is; a bounce is a
"Delivery failure" with its recipients; a period selects messages by their time.
"""

from __future__ import annotations

import json
import logging
import mailbox
import re
import shutil
import smtplib
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.outbound.test_verp import QMAIL

from postroom.exports import fonts
from postroom.outbound import actions
from postroom.service import Service
from postroom.storage import apikeys, conversation_views
from postroom.testing import conversation_with_subject, make_eml, wait_until
from postroom.web import create_app

SAMPLES = {
    "latin": "Grüße, café, naïve",
    "cyrillic": "Здравствуйте, мир",
    "greek": "Καλημέρα κόσμε",
    "chinese": "你好世界",
    "japanese": "こんにちは",
    "korean": "안녕하세요",
    "arabic": "مرحبا بالعالم",
    "hebrew": "שלום עולם",
    "devanagari": "नमस्ते",
    "thai": "สวัสดีครับ",
    "emoji": "😀🎉",
    "tangut": "\U00017000",  # no Noto Sans face draws Tangut: expect the marker
}
BIDI_MARKS = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069\\s]")


def pdf_text(path: Path) -> str:
    tool = shutil.which("pdftotext")
    assert tool, "pdftotext is missing: install poppler-utils (.ci/run does)"
    return subprocess.run([tool, "-enc", "UTF-8", str(path), "-"], check=True, capture_output=True,
                          text=True).stdout


def flat(text: str) -> str:
    """Text without whitespace and bidi marks: pdftotext wraps lines and brackets right-to-left runs."""
    return BIDI_MARKS.sub("", text)


def message_count(svc: Service, conv: int) -> int:
    with svc.app.session() as session:
        return len(conversation_views.get_conversation(session, conv)[1])


def test_the_pdf_shows_every_script_or_marks_what_no_font_draws(running: Service, customer: smtplib.SMTP, run,
                                                                tmp_path: Path) -> None:
    body = "\n\n".join(f"{name}: {sample}" for name, sample in SAMPLES.items())
    customer.sendmail("zoe@example.com", ["inbox@acme.mail.test"],
                      make_eml(sender="Зоя Ли <zoe@example.com>", subject="Scripts 文字 نص", body=body))
    conv = conversation_with_subject(running.app, "Scripts 文字 نص")
    out = tmp_path / "c.pdf"
    report = json.loads(run("conversations", "export", str(conv), "--format", "pdf", "-o", str(out), "--json"))
    assert report["messages"] == 1 and report["bytes"] == out.stat().st_size
    text = flat(pdf_text(out))
    available = fonts.installed()
    for name, sample in SAMPLES.items():
        drawable = all(ord(c) in available.main_chars or any(ord(c) in chars for _, chars in available.fallbacks)
                       for c in sample)
        expected = flat(sample) if drawable else "".join(fonts.marker(c) for c in sample)
        if name == "emoji" and drawable:  # colour glyphs are separate drawings that pdftotext may read out of order
            assert f"{name}:{expected[0]}" in text and all(c in text for c in expected), text
        else:
            assert f"{name}:{expected}" in text, (name, text)
    assert "[U+17000]" in text
    assert flat("Customer: Зоя Ли <zoe@example.com>") in text and flat("Scripts 文字 نص") in text


def test_the_noto_fonts_ci_installs_cover_cjk_arabic_and_emoji() -> None:
    fallback_chars = set().union(*(chars for _, chars in fonts.installed().fallbacks))
    for sample in (SAMPLES["chinese"], SAMPLES["arabic"], SAMPLES["emoji"], SAMPLES["thai"]):
        assert all(ord(c) in fallback_chars for c in sample), f"no installed font draws {sample!r} (.ci/run " \
                                                             "installs fonts-noto-core, -cjk and -color-emoji)"


def test_a_bounce_is_a_delivery_failure_not_a_customer_writing(running: Service, customer: smtplib.SMTP, relay,
                                                               run, tmp_path: Path) -> None:
    customer.sendmail("zoe@example.com", ["inbox@acme.mail.test"],
                      make_eml(sender="Zoë <zoe@example.com>", subject="Leak", body="Water from the ceiling."))
    conv = conversation_with_subject(running.app, "Leak")
    actions.reply(running.app, conv, "elodie@acme.example", "The plumber comes on Tuesday.",
                  dispatch=running.pipeline.dispatch_outbound)
    wait_until(lambda: relay.received)
    bounce_address = relay.received[-1].mail_from
    customer.sendmail("", [bounce_address], QMAIL.format(to=bounce_address, n=7).replace("\n", "\r\n").encode())
    wait_until(lambda: message_count(running, conv) == 3)
    out = tmp_path / "leak.pdf"
    assert "wrote 3 of 3 message(s)" in run("conversations", "export", str(conv), "--format", "pdf", "-o", str(out))
    text = pdf_text(out)
    assert "Delivery failure" in text and "Not delivered to: zoe@example.com" in text
    assert "Staff (not delivered): Élodie Martin" in text
    assert "MAILER-DAEMON" not in text and "qmail-send" not in text, "the bounce is not shown as someone writing"
    assert text.count("Customer:") == 1


def test_a_period_selects_messages_in_the_cli_and_the_api(running: Service, customer: smtplib.SMTP, run,
                                                          tmp_path: Path) -> None:
    first = make_eml(sender="Zoë <zoe@example.com>", subject="Keys", body="Day one.", message_id="<d1@example.com>",
                     date=datetime(2024, 12, 1, 9, 0, tzinfo=UTC))
    customer.sendmail("zoe@example.com", ["inbox@acme.mail.test"], first)
    conv = conversation_with_subject(running.app, "Keys")
    for day, mid in ((2, "<d2@example.com>"), (3, "<d3@example.com>")):
        customer.sendmail("zoe@example.com", ["inbox@acme.mail.test"], make_eml(
            sender="Zoë <zoe@example.com>", subject="Re: Keys", body=f"Day {day}.", message_id=mid,
            headers={"In-Reply-To": "<d1@example.com>", "References": "<d1@example.com>"},
            date=datetime(2024, 12, day, 23, 30, tzinfo=UTC)))
    wait_until(lambda: message_count(running, conv) == 3)

    out = tmp_path / "keys.mbox"
    run("conversations", "export", str(conv), "--format", "mbox", "--since", "2024-12-02", "--until", "2024-12-02",
        "-o", str(out))
    assert [m["Message-ID"] for m in mailbox.mbox(out)] == ["<d2@example.com>"]  # the whole of Dec 2
    run("conversations", "export", str(conv), "--format", "mbox", "--since", "2024-12-02T00:00+01:00", "-o", str(out))
    assert sorted(m["Message-ID"] for m in mailbox.mbox(out)) == ["<d2@example.com>", "<d3@example.com>"]
    assert run("conversations", "export", str(conv), "--format", "pdf", "--since", "2024-12-05", "--until",
               "2024-12-01", "-o", str(out), code=1).startswith("error: the period is empty")
    assert run("conversations", "export", str(conv), "--format", "pdf", "--since", "yesterday", "-o", str(out),
               code=1).startswith("error: 'yesterday' is not a date")

    with running.app.session() as session:
        key = {"Authorization": f"Bearer {apikeys.create_key(session, 'acme', 'tests')[1]}"}
        other = {"Authorization": f"Bearer {apikeys.create_key(session, 'globex', 'tests')[1]}"}
    with TestClient(create_app(running.app, lambda ids: None, lambda ids: None)) as client:
        mbox = client.get(f"/api/v1/conversations/{conv}/export.mbox", params={"until": "2024-12-02"}, headers=key)
        assert mbox.status_code == 200 and mbox.content.count(b"Message-ID: <d") == 2
        pdf = client.get(f"/api/v1/conversations/{conv}/export.pdf", params={"since": "2024-12-03"}, headers=key)
        (tmp_path / "api.pdf").write_bytes(pdf.content)
        text = pdf_text(tmp_path / "api.pdf")
        assert "Day 3." in text and "Day 2." not in text and "Day one." not in text
        assert "Messages from 2024-12-03 00:00 UTC to before now" in text
        bad = client.get(f"/api/v1/conversations/{conv}/export.pdf", params={"since": "soon"}, headers=key)
        assert bad.status_code == 400 and "not a date" in bad.json()["error"]["message"]
        assert client.get(f"/api/v1/conversations/{conv}/export.pdf", headers=other).status_code == 404


def test_a_long_conversation_exports_in_linear_time(running: Service, customer: smtplib.SMTP, run,
                                                    tmp_path: Path) -> None:
    """Twice the messages take about twice the time (not four times); a huge message is cut with a note."""
    paragraph = "Lorem ipsum dolor sit amet, консектетур 你好 adipiscing elit. " * 8 + "\n\n"
    timings = []
    for count in (15, 30):
        conv = _conversation_with_notes(running, customer, f"Long {count}", count, paragraph * 10)
        out = tmp_path / f"long{count}.pdf"
        started = time.process_time()
        run("conversations", "export", str(conv), "--format", "pdf", "-o", str(out))
        timings.append(time.process_time() - started)
    assert timings[1] < timings[0] * 3, timings
    huge = _conversation_with_notes(running, customer, "Huge", 1, "word " * 60_000)
    out = tmp_path / "huge.pdf"
    run("conversations", "export", str(huge), "--format", "pdf", "-o", str(out))
    assert flat("more characters not shown; the mbox export has the whole message") in flat(pdf_text(out))


def _conversation_with_notes(svc: Service, customer: smtplib.SMTP, subject: str, count: int, text: str) -> int:
    customer.sendmail("zoe@example.com", ["inbox@acme.mail.test"],
                      make_eml(sender="Zoë <zoe@example.com>", subject=subject, body="Hello."))
    conv = conversation_with_subject(svc.app, subject)
    for _ in range(count):
        actions.note(svc.app, conv, "elodie@acme.example", text)
    return conv


def test_a_pdf_export_writes_no_font_subsetting_lines(running: Service, customer: smtplib.SMTP, run, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    customer.sendmail("zoe@example.com", ["inbox@acme.mail.test"],
                      make_eml(sender="Zoë <zoe@example.com>", subject="Quiet", body="Привет 你好 مرحبا"))
    conv = conversation_with_subject(running.app, "Quiet")
    caplog.set_level(logging.INFO)
    run("conversations", "export", str(conv), "--format", "pdf", "-o", str(tmp_path / "q.pdf"))
    assert [r.getMessage() for r in caplog.records if r.name.startswith("fontTools")] == []
