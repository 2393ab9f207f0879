"""Rendering: parts, headers, encodings, signatures, locales, tenant overrides. Pure, no I/O but templates."""

from __future__ import annotations

import email
import email.policy
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from postroom.errors import PostroomError
from postroom.outbound.addressing import references_chain, tag_subject
from postroom.outbound.locale import LOCALES, STRINGS, normalize
from postroom.outbound.mime import build_message, to_bytes
from postroom.outbound.model import KINDS, Brand, OutboundContext, Person, QuotedMessage, Staff
from postroom.outbound.render import Renderer
from postroom.rendered import AttachmentRef

ACME = Brand(slug="acme", name="Acme Bâtiments", domain="acme.mail.test", locale="en")
ELODIE = Staff(name="Élodie Martin", email="elodie@acme.example", signature_text="Élodie Martin\nAfter-sales",
               signature_html='<p><b>Élodie</b> <a href="https://acme.example">acme</a></p><script>x()</script>')
CUSTOMER = Person(name="Zoë Müller", email="zoe@example.com")


def context(**changes: object) -> OutboundContext:
    base = OutboundContext(
        kind="reply", tenant=ACME, recipient=CUSTOMER, subject="Leak in the <bathroom>", reference="7K3M9Q",
        text="Hello Zoë,\n\nOur plumber comes on Tuesday at 9:00 <sharp>.\n\nBest regards", staff=ELODIE,
        conversation_id=12, reply_address="reply+abc123@acme.mail.test", in_reply_to="<c2@example.com>",
        references=("<c1@example.com>",),
        history=(QuotedMessage("Zoë Müller", datetime(2026, 11, 20, 9, 30, tzinfo=UTC), "There is a leak.\nHelp!"),),
    )
    return replace(base, **changes)


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def body(msg: email.message.EmailMessage, subtype: str) -> str:
    return msg.get_body((subtype,)).get_content().replace("\r\n", "\n")


def wire(ctx: OutboundContext, renderer: Renderer | None = None, blobs: dict[str, bytes] | None = None):
    rendered = (renderer or Renderer()).render(ctx)
    return rendered, parse(to_bytes(build_message(rendered, (blobs or {}).__getitem__)))


def test_reply_headers_threading_and_encoding() -> None:
    rendered, msg = wire(context())
    assert msg["From"].addresses[0].display_name == "Élodie Martin via Acme Bâtiments"
    assert msg["From"].addresses[0].addr_spec == "reply+abc123@acme.mail.test"
    assert msg["Reply-To"].addresses[0].addr_spec == "reply+abc123@acme.mail.test"
    assert msg["To"].addresses[0].display_name == "Zoë Müller"
    assert msg["Subject"] == "Re: Leak in the <bathroom> [#7K3M9Q]"
    assert msg["Message-ID"] == rendered.message_id and rendered.message_id.endswith("@acme.mail.test>")
    assert msg["In-Reply-To"] == "<c2@example.com>"
    assert msg["References"] == "<c1@example.com> <c2@example.com>"
    assert msg["Date"].datetime.tzinfo is not None
    assert msg["Auto-Submitted"] is None
    raw_headers = to_bytes(build_message(rendered, {}.__getitem__)).split(b"\r\n\r\n", 1)[0]
    assert raw_headers.isascii(), "non-ASCII names and subjects must be RFC 2047 encoded"
    assert b"=?utf-8?" in raw_headers


def test_multipart_alternative_with_text_written_as_text_and_html_escaped() -> None:
    _, msg = wire(context())
    assert msg.get_content_type() == "multipart/alternative"
    text = body(msg, "plain")
    html = body(msg, "html")
    assert "Our plumber comes on Tuesday at 9:00 <sharp>." in text
    assert "<p>" not in text and "&lt;" not in text
    assert "9:00 &lt;sharp&gt;." in html and "<sharp>" not in html
    assert "> There is a leak." in text and "<blockquote" in html
    assert "<script>" not in html and "<b>Élodie</b>" in html, "signature HTML is sanitised, not escaped"


def test_signature_appended_once_even_if_staff_pasted_it() -> None:
    _, msg = wire(context())
    text = body(msg, "plain")
    assert text.count("After-sales") == 1 and "\n-- \n" in text
    pasted = context(text="Hello,\n\nDone.\n\n-- \nÉlodie Martin\nAfter-sales\n")
    _, again = wire(pasted)
    assert body(again, "plain").count("After-sales") == 1
    assert body(again, "html").count("After-sales") == 1


@pytest.mark.parametrize("typed", ["-- \nÉlodie Martin\nAfter-sales", "--\r\nÉlodie Martin\r\nAfter-sales",
                                   "--\nÉlodie Martin\nAfter-sales"])
def test_a_signature_typed_with_its_own_delimiter_gets_one(typed: str) -> None:
    _, msg = wire(context(staff=replace(ELODIE, signature_text=typed)))
    lines = body(msg, "plain").splitlines()
    assert [line.rstrip() for line in lines].count("--") == 1
    assert lines[lines.index("-- ") + 1] == "Élodie Martin"


def test_no_signature_without_staff_and_reference_not_duplicated() -> None:
    rendered, _ = wire(context(staff=None, subject="Re: Leak [#7K3M9Q]"))
    assert rendered.subject == "Re: Leak [#7K3M9Q]"
    assert "\n-- \n" not in rendered.text
    assert rendered.header("From") == "Acme Bâtiments <reply+abc123@acme.mail.test>"


@pytest.mark.parametrize("kind", ["ack", "auto_reply"])
def test_automatic_mail_is_marked_auto_submitted(kind: str) -> None:
    rendered, msg = wire(context(kind=kind, staff=None))
    assert msg["Auto-Submitted"] == "auto-replied"
    assert "[#7K3M9Q]" in msg["Subject"]


def test_tenant_sender_overrides_from_but_reply_to_keeps_the_token() -> None:
    rendered, msg = wire(context(tenant=replace(ACME, sender="Acme Service <service@acme.example>")))
    assert msg["From"].addresses[0].addr_spec == "service@acme.example"
    assert msg["Reply-To"].addresses[0].addr_spec == "reply+abc123@acme.mail.test"
    assert rendered.mail_from == "reply+abc123@acme.mail.test"


@pytest.mark.parametrize("locale_name", LOCALES)
def test_every_kind_renders_in_every_locale(locale_name: str) -> None:
    renderer = Renderer()
    for kind in KINDS:
        rendered = renderer.render(context(kind=kind, tenant=replace(ACME, locale=locale_name)))
        assert rendered.text.strip() and "<html" in rendered.html
        assert f'lang="{locale_name}"' in rendered.html
    ack = renderer.render(context(kind="ack", tenant=replace(ACME, locale=locale_name)))
    assert STRINGS[locale_name]["ack_body"] in ack.text
    assert ack.subject.startswith(STRINGS[locale_name]["ack_subject"])


def test_locale_fallback() -> None:
    assert normalize("fr_BE") == "fr" and normalize("DE-at") == "de" and normalize("xx") == "en"
    assert normalize(None) == "en"


def test_tenant_override_replaces_a_builtin_for_that_tenant_only(tmp_path: Path) -> None:
    (tmp_path / "acme").mkdir()
    (tmp_path / "acme" / "ack.txt.j2").write_text("Dear {{ recipient.name }}, ticket {{ reference }} is open.\n")
    (tmp_path / "acme" / "ack.html.j2").write_text("<p>Dear {{ recipient.name }} {{ '<b>' }}</p>\n")
    renderer = Renderer(tmp_path)
    acme = renderer.render(context(kind="ack", recipient=Person("A <b>", "a@example.com")))
    assert acme.text.strip() == "Dear A <b>, ticket 7K3M9Q is open."
    assert acme.html.strip() == "<p>Dear A &lt;b&gt; &lt;b&gt;</p>", "overrides are autoescaped too"
    globex = renderer.render(context(kind="ack", tenant=replace(ACME, slug="globex")))
    assert "Thank you for your message" in globex.text


def test_tenant_override_cannot_reach_python_internals(tmp_path: Path) -> None:
    from jinja2.exceptions import SecurityError

    (tmp_path / "acme").mkdir()
    (tmp_path / "acme" / "ack.txt.j2").write_text("{{ tenant.__class__.__init__.__globals__ }}\n")
    with pytest.raises(SecurityError):
        Renderer(tmp_path).render(context(kind="ack"))


def test_attachments_by_reference_are_listed_and_attached() -> None:
    data = b"%PDF-1.4 plan"
    ref = AttachmentRef("plan étage.pdf", "application/pdf", "a" * 64, len(data))
    _, msg = wire(context(attachments=(ref,)), blobs={"a" * 64: data})
    assert msg.get_content_type() == "multipart/mixed"
    parts = list(msg.iter_attachments())
    assert [p.get_filename() for p in parts] == ["plan étage.pdf"]
    assert parts[0].get_content() == data
    assert "plan étage.pdf" in body(msg, "plain")


def test_subject_tag_and_references_helpers() -> None:
    assert tag_subject("Re: RE: Aw: Leak", "ABC123") == "Re: Leak [#ABC123]"
    assert tag_subject("Leak [#abc123]", "ABC123") == "Leak [#abc123]"
    chain = references_chain(tuple(f"<{i}@x>" for i in range(30)), "<p@x>")
    assert len(chain) == 20 and chain[0] == "<0@x>" and chain[-1] == "<p@x>"


def test_a_rule_names_its_auto_reply_template(tmp_path: Path) -> None:
    (tmp_path / "acme").mkdir()
    (tmp_path / "acme" / "holidays.txt.j2").write_text("Hello {{ recipient.name }},\n\nWe are closed until "
                                                       "Monday <3.\n\n-- \n{{ tenant.name }}\n")
    renderer = Renderer(tmp_path)
    rendered = renderer.render(context(kind="auto_reply", staff=None, template="holidays"))
    assert rendered.text.startswith("Hello Zoë Müller,\n\nWe are closed until Monday <3.")
    assert "Monday &lt;3." in rendered.html and "<html" in rendered.html, "HTML from the text, escaped"
    assert rendered.subject == "Automatic reply: Leak in the <bathroom> [#7K3M9Q]"
    assert ("Auto-Submitted", "auto-replied") in rendered.headers
    ack = renderer.render(context(kind="auto_reply", staff=None, template="acknowledgement"))
    assert "Thank you for your message" in ack.text
    with pytest.raises(PostroomError, match="no template 'missing' for tenant acme"):
        renderer.render(context(kind="auto_reply", template="missing"))


def test_html_from_the_text_follows_each_message_and_the_current_layout(tmp_path: Path) -> None:
    """The text-as-HTML template is compiled once per tenant; each render has its own text, and the layout it
    extends is looked up at each render (a tenant's new layout is used at once)."""
    (tmp_path / "acme").mkdir()
    (tmp_path / "acme" / "holidays.txt.j2").write_text("Closed until {{ recipient.name }} <3\n")
    (tmp_path / "acme" / "thanks.txt.j2").write_text("Thanks, {{ tenant.name }}\n")
    renderer = Renderer(tmp_path)
    first = renderer.render(context(kind="auto_reply", staff=None, template="holidays")).html
    second = renderer.render(context(kind="auto_reply", staff=None, template="thanks")).html
    assert "Closed until Zoë Müller &lt;3" in first and "Closed" not in second and "Thanks," in second
    (tmp_path / "acme" / "_layout.html.j2").write_text("<div id=own>{% block body %}{% endblock %}</div>\n")
    third = renderer.render(context(kind="auto_reply", staff=None, template="holidays")).html
    assert third.startswith("<div id=own>") and "Closed until Zoë Müller &lt;3" in third
    assert renderer.text_as_html("acme") is renderer.text_as_html("acme")
