"""A rendered outbound message and its attachment references, as outbound sends them and storage keeps them.

Below both outbound and storage, so that storage can persist what outbound
renders without importing the outbound stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AttachmentRef:
    """An attachment by reference: the bytes stay in the blob store under ``sha256``."""

    filename: str
    content_type: str
    sha256: str
    size: int



@dataclass(frozen=True)
class Rendered:
    """A rendered message: parts plus the headers it will be sent with (no attachment bytes)."""

    kind: str
    subject: str
    text: str
    html: str
    message_id: str
    headers: tuple[tuple[str, str], ...] = ()
    mail_from: str = ""
    recipients: tuple[str, ...] = ()
    attachments: tuple[AttachmentRef, ...] = field(default=())

    def header(self, name: str) -> str | None:
        lname = name.lower()
        return next((v for k, v in self.headers if k.lower() == lname), None)
