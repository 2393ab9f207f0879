"""Conversation exports for the portal's "export" button: an mbox of the mail, and a readable PDF.

Customer mail goes into the mbox exactly as received (from the blob store);
staff messages and internal notes are rebuilt from their stored text, notes
marked with ``X-Postroom-Internal: yes`` so nobody mistakes them for mail sent.
"""

from __future__ import annotations

import mailbox
import tempfile
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from fpdf import FPDF

from postroom.storage.conversations import ConversationSummary, MessageView

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"))


def _rebuilt(view: MessageView) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"{view.author_name} <{view.author_email}>" if view.author_email else view.author_name or "staff"
    msg["Subject"] = view.subject
    msg["Date"] = format_datetime(view.sent_at or view.created_at)
    if view.message_id:
        msg["Message-ID"] = view.message_id
    if view.kind == "note":
        msg["X-Postroom-Internal"] = "yes"
    msg.set_content(view.text or view.reply_text or "")
    return msg


def to_mbox(messages: list[tuple[MessageView, bytes | None]]) -> bytes:
    """One mbox (mboxrd quoting by the stdlib) with every message in conversation order."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "export.mbox"
        box = mailbox.mbox(path, create=True)
        for view, raw in messages:
            box.add(mailbox.mboxMessage(raw) if raw is not None else mailbox.mboxMessage(_rebuilt(view)))
        box.flush()
        box.close()
        return path.read_bytes()


def _pdf_font(pdf: FPDF) -> tuple[str, bool]:
    """DejaVu (all of Unicode's common scripts) when installed, else a core font limited to Latin-1."""
    for folder in FONT_DIRS:
        if (folder / "DejaVuSans.ttf").exists() and (folder / "DejaVuSans-Bold.ttf").exists():
            pdf.add_font("DejaVu", "", str(folder / "DejaVuSans.ttf"))
            pdf.add_font("DejaVu", "B", str(folder / "DejaVuSans-Bold.ttf"))
            return "DejaVu", True
    return "Helvetica", False


def to_pdf(summary: ConversationSummary, messages: list[MessageView]) -> bytes:
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(True, margin=15)
    font, unicode_ok = _pdf_font(pdf)

    def clean(text: str) -> str:
        return text if unicode_ok else text.encode("latin-1", "replace").decode("latin-1")

    pdf.set_title(clean(f"{summary.reference} {summary.subject}"))
    pdf.add_page()
    pdf.set_font(font, "B", 14)
    pdf.multi_cell(0, 8, clean(f"{summary.subject}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(font, "", 9)
    pdf.multi_cell(0, 5, clean(f"Conversation {summary.reference} · status {summary.status} · "
                               f"{summary.contact_name} {summary.contact_email or ''}"),
                   new_x="LMARGIN", new_y="NEXT")
    for view in messages:
        pdf.ln(4)
        pdf.set_font(font, "B", 10)
        label = "Internal note" if view.kind == "note" else ("Customer" if view.direction == "in" else "Staff")
        when = (view.sent_at or view.created_at).strftime("%Y-%m-%d %H:%M")
        pdf.multi_cell(0, 5, clean(f"{label}: {view.author_name} <{view.author_email}> · {when}"),
                       new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(font, "", 10)
        pdf.multi_cell(0, 5, clean(view.reply_text or view.text or ""), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
