"""Build the wire message: multipart/alternative (text + HTML), mixed when there are attachments.

``email.policy.SMTP`` encodes non-ASCII display names and subjects as RFC 2047
words, folds long headers and uses CRLF, so what we build is what relays expect.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable
from email.message import MIMEPart
from email.policy import SMTP

from postroom.rendered import AttachmentRef, Rendered

POLICY = SMTP.clone(max_line_length=78)


def build_message(rendered: Rendered, fetch: Callable[[str], bytes]) -> MIMEPart:
    """The message for ``rendered``; attachment bytes come from ``fetch(sha256)`` (the blob store).

    Built on MIMEPart so only the top level carries MIME-Version (EmailMessage repeats it per part).
    """
    msg = MIMEPart(policy=POLICY)
    for name, value in rendered.headers:
        msg[name] = value
    msg["MIME-Version"] = "1.0"
    msg.set_content(rendered.text, subtype="plain", charset="utf-8", cte=_cte(rendered.text))
    msg.add_alternative(rendered.html, subtype="html", charset="utf-8", cte=_cte(rendered.html))
    for ref in rendered.attachments:
        _attach(msg, ref, fetch(ref.sha256))
    return msg


def to_bytes(msg: MIMEPart) -> bytes:
    return msg.as_bytes(policy=POLICY)


def _cte(text: str) -> str:
    """7bit/quoted-printable keep the text readable in raw form and safe for 7-bit relays."""
    return "7bit" if text.isascii() and all(len(line) <= 998 for line in text.splitlines()) else "quoted-printable"


def _attach(msg: MIMEPart, ref: AttachmentRef, data: bytes) -> None:
    if ref.content_type == "message/rfc822":
        # RFC 2046 5.2.1: an attached message is 7bit/8bit, never base64, so it is added as a message
        msg.add_attachment(email.message_from_bytes(data, policy=email.policy.default), filename=ref.filename)
        return
    maintype, _, subtype = (ref.content_type or "application/octet-stream").partition("/")
    msg.add_attachment(data, maintype=maintype or "application", subtype=subtype or "octet-stream",
                       filename=ref.filename)
