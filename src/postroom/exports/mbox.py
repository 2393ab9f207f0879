"""The mbox export: every message of the period, in conversation order.

Received mail goes in exactly as it arrived (from the blob store); staff
messages and internal notes are rebuilt from their stored text, notes marked
with ``X-Postroom-Internal: yes`` so nobody mistakes them for mail sent.
"""

from __future__ import annotations

import mailbox
import tempfile
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from postroom.exports import ExportItem
from postroom.storage.conversation_views import MessageView


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


def to_mbox(items: Sequence[ExportItem]) -> bytes:
    """One mbox (mboxrd quoting by the stdlib) written to a temporary file, so memory holds one message at a time."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "export.mbox"
        box = mailbox.mbox(path, create=True)
        for item in items:
            box.add(mailbox.mboxMessage(item.raw) if item.raw is not None else mailbox.mboxMessage(_rebuilt(item.view)))
        box.flush()
        box.close()
        return path.read_bytes()
