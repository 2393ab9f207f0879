"""Transports: SMTP, SES and the portal webhook, chosen by configuration."""

from __future__ import annotations

from urllib.parse import urlparse

from postroom.errors import ConfigError
from postroom.outbound.transports.base import (
    Outgoing,
    PermanentFailure,
    SendResult,
    TemporaryFailure,
    Transport,
    UnknownOutcome,
)

__all__ = ["Outgoing", "PermanentFailure", "SendResult", "TemporaryFailure", "Transport", "UnknownOutcome",
           "mail_transport", "portal_transport"]


def mail_transport(url: str) -> Transport:
    """``smtp://``, ``smtp+starttls://``, ``smtps://`` or ``ses://region`` (POSTROOM_OUTBOUND_URL)."""
    scheme = urlparse(url).scheme
    if scheme in ("smtp", "smtp+starttls", "smtps"):
        from postroom.outbound.transports.smtp import SmtpTransport

        return SmtpTransport.from_url(url)
    if scheme == "ses":
        from postroom.outbound.transports.ses import SesTransport

        return SesTransport.from_url(url)
    raise ConfigError(f"POSTROOM_OUTBOUND_URL {url!r}: use smtp://host:port, smtp+starttls://user:password@host:port, "
                      "smtps://host:port or ses://region")


def portal_transport(url: str, secret: str) -> Transport:
    """The portal webhook (POSTROOM_PORTAL_WEBHOOK_URL, signed with POSTROOM_PORTAL_WEBHOOK_SECRET)."""
    if not url:
        raise ConfigError("POSTROOM_PORTAL_WEBHOOK_URL is not set; portal notifications cannot be sent")
    if not secret:
        raise ConfigError("POSTROOM_PORTAL_WEBHOOK_SECRET is not set; portal notifications must be signed")
    from postroom.outbound.transports.portal import PortalTransport

    return PortalTransport(url, secret)
