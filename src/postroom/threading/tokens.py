"""Reply tokens: ``reply+<token>@<tenant domain>`` names a conversation and the contact it was sent to.

A token is ``base32(version | varint(conversation) | varint(contact) | mac)``,
lower case without padding, where ``mac`` is the first 10 bytes (80 bits) of
HMAC-SHA256 over the payload, keyed with the tenant's own secret. So a token
of another tenant, an edited id or a truncated token fails the check, and
the comparison is constant-time. Typical tokens are ~28
characters, well inside the 64-character local part.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

from postroom.gateway.addresses import REPLY_PREFIX

VERSION = 1
MAC_BYTES = 10
_CONTEXT = b"postroom reply token v1"


@dataclass(frozen=True)
class TokenClaim:
    """What an authentic token says."""

    conversation_id: int
    contact_id: int


def _varint(value: int) -> bytes:
    if value < 0:
        raise ValueError("token ids must be non-negative")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    for index in range(pos, min(len(data), pos + 9)):
        byte = data[index]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, index + 1
        shift += 7
    raise ValueError("truncated id")


def _mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, _CONTEXT + b"|" + payload, hashlib.sha256).digest()[:MAC_BYTES]


def make_token(secret: bytes, conversation_id: int, contact_id: int) -> str:
    payload = bytes([VERSION]) + _varint(conversation_id) + _varint(contact_id)
    raw = payload + _mac(secret, payload)
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def verify_token(secret: bytes, token: str) -> TokenClaim | None:
    """The claim of an authentic token of this tenant, or None (forged, truncated, foreign, garbage)."""
    token = token.strip().upper()
    if not token or len(token) > 64:
        return None
    try:
        raw = base64.b32decode(token + "=" * (-len(token) % 8))
    except (binascii.Error, ValueError):
        return None
    if len(raw) < 1 + 2 + MAC_BYTES or raw[0] != VERSION:
        return None
    if base64.b32encode(raw).decode("ascii").rstrip("=") != token:
        return None  # non-zero padding bits: only the one canonical spelling is accepted
    payload, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac(secret, payload)):
        return None
    try:
        conversation_id, pos = _read_varint(payload, 1)
        contact_id, pos = _read_varint(payload, pos)
    except ValueError:
        return None
    if pos != len(payload):
        return None
    return TokenClaim(conversation_id, contact_id)


def make_reply_address(secret: bytes, tenant_domain: str, conversation_id: int, contact_id: int) -> str:
    """``reply+<token>@<tenant domain>``: the Reply-To (and envelope sender) of outbound mail."""
    token = make_token(secret, conversation_id, contact_id)
    return f"{REPLY_PREFIX}{token}@{tenant_domain.lower()}"


def token_of(address: str) -> str | None:
    """The token of a ``reply+<token>@…`` address, or None."""
    local = address.strip().strip("<>").rpartition("@")[0].lower()
    if local.startswith(REPLY_PREFIX) and len(local) > len(REPLY_PREFIX):
        return local[len(REPLY_PREFIX):]
    return None
