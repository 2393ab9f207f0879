"""Render an OutboundContext into subject, plain-text and HTML parts plus headers.

Templates are looked up first in the tenant's override folder
(``<data_dir>/templates/<tenant slug>/``), then among the built-ins shipped
in ``postroom/outbound/templates``. The text part has its own templates (it
is written as text, never derived from the HTML); only ``*.html.j2`` is
autoescaped. Tenant templates run sandboxed with strict undefined, so a typo
fails when the reply is queued instead of mailing a half-empty message.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import nh3
from jinja2 import (
    BaseLoader,
    Environment,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
    select_autoescape,
)
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup, escape

from postroom.errors import PostroomError
from postroom.outbound import locale as locales
from postroom.outbound.addressing import format_address, references_chain, tag_subject
from postroom.outbound.model import AUTOMATIC_KINDS, KINDS, OutboundContext, Staff
from postroom.rendered import Rendered

TEMPLATE_ALIASES = {"acknowledgement": "ack", "acknowledgment": "ack"}
TEXT_AS_HTML = '{% extends "_layout.html.j2" %}{% block body %}{{ text | paragraphs }}{% endblock %}'
_BLANK_RUNS = re.compile(r"\n{3,}")
_TRAILING_SPACE = re.compile(r"(?<!^--)[ \t]+$", re.M)
_OWN_DELIMITER = re.compile(r"\A--[ \t\r]*(?:\n|\Z)")  # a signature typed with its own "-- " line


def paragraphs(text: str) -> Markup:
    """Plain text -> escaped HTML paragraphs, single newlines kept as <br>."""
    blocks = [b for b in re.split(r"\n\s*\n", (text or "").strip().replace("\r\n", "\n")) if b.strip()]
    return Markup("\n").join(Markup("<p>{}</p>").format(Markup("<br>\n").join(escape(line) for line in b.split("\n")))
                             for b in blocks)


def quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in (text or "").strip().split("\n"))


def filesize(size: int) -> str:
    for unit, step in (("MB", 1024 * 1024), ("kB", 1024)):
        if size >= step:
            return f"{size / step:.1f} {unit}"
    return f"{size} B"


def maildate(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M")


def clean_text(text: str) -> str:
    """Tidy a rendered text part: no trailing blanks (but keep the '-- ' delimiter), no blank-line runs."""
    text = _TRAILING_SPACE.sub("", text.replace("\r\n", "\n"))
    return _BLANK_RUNS.sub("\n\n", text).strip() + "\n"


def signature_parts(text: str, staff: Staff | None) -> tuple[str, Markup]:
    """The signature to append, or empty when the text already ends with it (appended exactly once)."""
    if staff is None or not (staff.signature_text.strip() or staff.signature_html.strip()):
        return "", Markup("")
    plain = _OWN_DELIMITER.sub("", staff.signature_text.strip(), count=1).strip()  # the template writes "-- "
    body = " ".join((text or "").split())
    if plain and body.endswith(" ".join(plain.split())):
        return "", Markup("")
    html = Markup(nh3.clean(staff.signature_html)) if staff.signature_html.strip() else Markup("")
    return plain, html


def new_message_id(domain: str) -> str:
    """A fresh Message-ID on the tenant's domain (time + 96 random bits: unique without coordination)."""
    return f"<{int(time.time() * 1000):x}.{secrets.token_hex(12)}@{domain}>"


class OverridesLoader(BaseLoader):
    """A tenant's template folder over the built-ins, re-read while the service runs.

    An override added, changed or removed takes effect at the next render:
    a built-in is only up to date while no override of that name exists, and
    an override only while its file keeps its modification time (Jinja asks
    ``uptodate`` before reusing a compiled template, ``auto_reload``).
    """

    def __init__(self, folder: Path, builtin: BaseLoader) -> None:
        self.folder = folder
        self.overrides = FileSystemLoader(folder)
        self.builtin = builtin

    def get_source(self, environment: Environment, template: str) -> tuple[str, str | None, Callable[[], bool]]:
        try:
            return self.overrides.get_source(environment, template)
        except TemplateNotFound:
            source, filename, builtin_uptodate = self.builtin.get_source(environment, template)
            override = self.folder / template

            def uptodate() -> bool:
                return not override.exists() and (builtin_uptodate is None or builtin_uptodate())

            return source, filename, uptodate


class Renderer:
    """Jinja environments per tenant (built-ins + that tenant's overrides), built once and cached."""

    def __init__(self, overrides_root: Path | None = None) -> None:
        self.overrides_root = overrides_root
        self._envs: dict[str, SandboxedEnvironment] = {}
        self._text_as_html: dict[str, Template] = {}
        self._lock = threading.Lock()

    def environment(self, tenant_slug: str) -> SandboxedEnvironment:
        with self._lock:
            env = self._envs.get(tenant_slug)
            if env is None:
                env = self._envs[tenant_slug] = self._build(tenant_slug)
            return env

    def _build(self, tenant_slug: str) -> SandboxedEnvironment:
        builtin = PackageLoader("postroom.outbound", "templates")
        loader = builtin if self.overrides_root is None else OverridesLoader(self.overrides_root / tenant_slug, builtin)
        env = SandboxedEnvironment(
            loader=loader, autoescape=select_autoescape(["html.j2"], default=False),
            undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
            auto_reload=True,
        )
        env.filters.update(paragraphs=paragraphs, quote=quote, filesize=filesize, maildate=maildate)
        return env

    def text_as_html(self, tenant_slug: str) -> Template:
        """The HTML part of a message whose template has none, compiled once per tenant (``from_string`` compiles
        on every call; the layout it extends is still looked up, and reloaded, at each render)."""
        env = self.environment(tenant_slug)
        with self._lock:
            template = self._text_as_html.get(tenant_slug)
            if template is None:
                template = self._text_as_html[tenant_slug] = env.from_string(TEXT_AS_HTML)
            return template

    def has_template(self, tenant_slug: str, name: str) -> bool:
        """True when ``name`` (or its alias) has a text template for this tenant, built in or its own."""
        name = TEMPLATE_ALIASES.get(name, name)
        try:
            self.environment(tenant_slug).get_template(f"{name}.txt.j2")
        except TemplateNotFound:
            return False
        return True

    def render(self, ctx: OutboundContext, *, message_id: str | None = None, date: datetime | None = None) -> Rendered:
        """Subject, both parts and the full header set for one message."""
        if ctx.kind not in KINDS:
            raise ValueError(f"unknown outbound kind {ctx.kind!r}; one of {', '.join(KINDS)}")
        env = self.environment(ctx.tenant.slug)
        signature, signature_html = signature_parts(ctx.text, ctx.staff)
        values = {
            "kind": ctx.kind, "tenant": ctx.tenant, "recipient": ctx.recipient, "staff": ctx.staff,
            "text": ctx.text.strip(), "subject": ctx.subject, "reference": ctx.reference,
            "attachments": ctx.attachments, "history": ctx.history, "portal_link": ctx.portal_link,
            "signature": signature, "signature_html": signature_html,
            "author": ctx.staff.name if ctx.staff else ctx.tenant.name,
            "locale": locales.normalize(ctx.tenant.locale), "t": locales.translator(ctx.tenant.locale),
        }
        name = TEMPLATE_ALIASES.get(ctx.template or ctx.kind, ctx.template or ctx.kind)
        try:
            text_template = env.get_template(f"{name}.txt.j2")
        except TemplateNotFound as exc:
            raise PostroomError(f"no template {name!r} for tenant {ctx.tenant.slug}: add {name}.txt.j2 (and "
                                f"optionally {name}.html.j2, {name}.subject.j2) to its template folder") from exc
        subject_template = env.select_template([f"{name}.subject.j2", f"{ctx.kind}.subject.j2"])
        subject = tag_subject(" ".join(subject_template.render(values).split()), ctx.reference)
        values["subject"] = subject
        text = clean_text(text_template.render(values))
        try:
            html = env.get_template(f"{name}.html.j2").render(values)
        except TemplateNotFound:
            html = self.text_as_html(ctx.tenant.slug).render({**values, "text": text})
        message_id = message_id or new_message_id(ctx.tenant.domain)
        return Rendered(
            kind=ctx.kind, subject=subject, text=text, html=html, message_id=message_id,
            headers=_headers(ctx, subject, message_id, date or datetime.now(UTC)),
            mail_from=ctx.reply_address or f"postmaster@{ctx.tenant.domain}",
            recipients=(ctx.recipient.email,), attachments=ctx.attachments,
        )


def _headers(ctx: OutboundContext, subject: str, message_id: str, date: datetime) -> tuple[tuple[str, str], ...]:
    """Addressing and threading headers; values are unicode, encoded when the MIME message is built."""
    t = locales.translator(ctx.tenant.locale)
    reply_address = ctx.reply_address or f"inbox@{ctx.tenant.domain}"
    if ctx.tenant.sender:
        sender = ctx.tenant.sender
    else:
        display = t("via", staff=ctx.staff.name, tenant=ctx.tenant.name) if ctx.staff else ctx.tenant.name
        sender = format_address(display, reply_address)
    headers: list[tuple[str, str]] = [
        ("From", sender),
        ("To", format_address(ctx.recipient.name, ctx.recipient.email)),
        ("Reply-To", format_address(ctx.tenant.name, reply_address)),
        ("Subject", subject),
        ("Date", format_datetime(date.astimezone(UTC))),
        ("Message-ID", message_id),
    ]
    if ctx.in_reply_to:
        headers.append(("In-Reply-To", ctx.in_reply_to))
    chain = references_chain(ctx.references, ctx.in_reply_to)
    if chain:
        headers.append(("References", " ".join(chain)))
    if ctx.kind in AUTOMATIC_KINDS:
        headers += [("Auto-Submitted", "auto-replied"), ("X-Auto-Response-Suppress", "All")]
    return tuple(headers)
