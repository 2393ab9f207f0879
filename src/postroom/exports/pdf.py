"""The PDF export: a printable transcript that shows every script the mail contains.

Text is drawn in DejaVu Sans with the Noto fonts a conversation needs as
fallbacks (see ``fonts``); a character no installed font has becomes a
visible ``[U+XXXX]`` marker. Paragraphs in scripts that need shaping (Arabic,
Hebrew, Indic, Thai...) go through HarfBuzz, which also lays right-to-left
text out in order; the rest skip it, as shaping costs about five times as much.
Text is drawn paragraph by paragraph, in pieces of at most ``PIECE`` characters,
and each message is cut at ``MAX_MESSAGE_CHARS`` with a note, so the time is
linear in the conversation's size and bounded per message.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterator, Sequence
from datetime import UTC

from fpdf import FPDF

from postroom.exports import ExportItem, Period
from postroom.exports.fonts import Fonts, installed
from postroom.storage.conversation_views import ConversationSummary

MAX_MESSAGE_CHARS = 100_000
PIECE = 4_000
# Arabic, Hebrew, Syriac, Thaana, N'Ko, the Indic scripts, Thai, Lao, Tibetan, Myanmar, Khmer, Mongolian and
# Arabic presentation forms: the scripts whose letters change shape or order with their neighbours.
NEEDS_SHAPING = re.compile("[\u0590-\u08ff\u0900-\u0dff\u0e00-\u0fff\u1000-\u109f\u1780-\u18af"
                           "\ufb1d-\ufdff\ufe70-\ufeff]")
_PARAGRAPHS = re.compile(r"\n[ \t]*\n")


@functools.cache
def _shaping_available() -> bool:
    """fpdf2 shapes through uharfbuzz (a dependency); without it text is still drawn, unshaped, and said so once."""
    try:
        import uharfbuzz  # noqa: F401
    except ImportError:
        logging.getLogger(__name__).warning("uharfbuzz is missing: Arabic and Indic text is drawn unshaped")
        return False
    return True


def _pieces(text: str) -> Iterator[str]:
    """Paragraphs, long ones split at a space near ``PIECE`` characters (fpdf2's line breaking is not linear)."""
    for paragraph in _PARAGRAPHS.split(text):
        while len(paragraph) > PIECE:
            cut = paragraph.rfind(" ", PIECE // 2, PIECE)
            cut = PIECE if cut < 0 else cut + 1
            yield paragraph[:cut]
            paragraph = paragraph[cut:]
        if paragraph.strip():
            yield paragraph


def _capped(text: str) -> str:
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    return (f"{text[:MAX_MESSAGE_CHARS]}\n\n[… {len(text) - MAX_MESSAGE_CHARS:,} more characters not shown; "
            "the mbox export has the whole message]")


def _label(item: ExportItem) -> str:
    view = item.view
    if view.kind == "note":
        return "Internal note"
    if "auto_reply" in view.flags:
        return "Automatic reply"
    if view.direction == "in":
        return "Customer"
    return "Staff (not delivered)" if "bounced" in view.flags else "Staff"


def _failure_lines(item: ExportItem) -> list[str]:
    failure = item.failure
    if failure is None or not (failure.permanent or failure.temporary):
        return ["The notice names no recipient postroom could attribute."]
    lines = []
    if failure.permanent:
        lines.append(f"Not delivered to: {', '.join(failure.permanent)}")
    if failure.temporary:
        lines.append(f"Delayed for: {', '.join(failure.temporary)}")
    if failure.status:
        lines.append(f"Status: {failure.status}")
    return lines


class _Writer:
    """One PDF with the chosen fonts; ``write`` replaces what no font has and shapes only where needed."""

    def __init__(self, fonts: Fonts, texts: Sequence[str]) -> None:
        self.pdf = FPDF(format="A4")
        self.pdf.set_auto_page_break(True, margin=15)
        self.shaping = False
        if fonts.regular is not None and fonts.bold is not None:
            self.pdf.add_font("Main", "", str(fonts.regular))
            self.pdf.add_font("Main", "B", str(fonts.bold))
            self.family = "Main"
            fallbacks, self.missing = fonts.plan(texts)
            for font in fallbacks:
                self.pdf.add_font(font.name, "", str(font.path), collection_font_number=font.collection_number)
            if fallbacks:
                self.pdf.set_fallback_fonts([f.name for f in fallbacks], exact_match=False)
        else:
            self.family = "Helvetica"
            _, self.missing = fonts.plan(texts)
        self.table = str.maketrans(self.missing) if self.missing else None
        self.can_shape = self.family == "Main" and _shaping_available()

    def clean(self, text: str) -> str:
        return text.translate(self.table) if self.table else text

    def write(self, text: str, *, size: float = 10, bold: bool = False, height: float = 5) -> None:
        self.pdf.set_font(self.family, "B" if bold else "", size)
        for piece in _pieces(self.clean(text)):
            shape = self.can_shape and NEEDS_SHAPING.search(piece) is not None
            if shape != self.shaping:
                self.pdf.set_text_shaping(shape)
                self.shaping = shape
            self.pdf.multi_cell(0, height, piece, new_x="LMARGIN", new_y="NEXT")


def to_pdf(summary: ConversationSummary, items: Sequence[ExportItem], period: Period = Period()) -> bytes:
    """The transcript: a heading, then each message with who wrote it and when; bounces as delivery failures."""
    logging.getLogger("fontTools").setLevel(logging.WARNING)  # its subsetter logs ~75 INFO lines per font
    header = f"Conversation {summary.reference} · status {summary.status} · " \
             f"{summary.contact_name} {summary.contact_email or ''}".rstrip()
    bodies = {item.view.id: "" if item.is_bounce else _capped(item.view.reply_text or item.view.text or "")
              for item in items}
    heads = {item.view.id: f"{item.view.author_name} <{item.view.author_email}>" for item in items}
    scope = period.describe()
    texts = [summary.subject, header, scope, *bodies.values(), *heads.values(),
             *(line for item in items if item.is_bounce for line in _failure_lines(item))]
    writer = _Writer(installed(), texts)
    writer.pdf.set_title(writer.clean(f"{summary.reference} {summary.subject}"))
    writer.pdf.add_page()
    writer.write(summary.subject or "(no subject)", size=14, bold=True, height=8)
    writer.write(header, size=9)
    if scope:
        writer.write(scope, size=9)
    for item in items:
        writer.pdf.ln(4)
        when = item.when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        if item.is_bounce:
            writer.write(f"Delivery failure · {when}", bold=True)
            for line in _failure_lines(item):
                writer.write(line)
            continue
        writer.write(f"{_label(item)}: {heads[item.view.id]} · {when}", bold=True)
        writer.write(bodies[item.view.id])
    return bytes(writer.pdf.output())
