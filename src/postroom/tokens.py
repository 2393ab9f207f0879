"""Signed addresses: ``reply+<token>@`` names a conversation and its contact, ``bounce+<token>@`` one outbound message.

A token is ``base32(version | varint(id) … | mac)``, lower case without
padding, where ``mac`` is the first 10 bytes (80 bits) of HMAC-SHA256 over
the payload, keyed with the tenant's own secret and a context per kind (a
reply token is never a valid bounce token). So a token of another tenant,
an edited id or a truncated token fails the check, and the comparison is
constant-time. Typical tokens are ~28 characters, well inside the
64-character local part.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

from postroom.addresses import BOUNCE_PREFIX, REPLY_PREFIX

VERSION = 1
MAC_BYTES = 10
_CONTEXT = b"postroom reply token v1"
_BOUNCE_CONTEXT = b"postroom bounce token v1"


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


def _mac(secret: bytes, payload: bytes, context: bytes) -> bytes:
    return hmac.new(secret, context + b"|" + payload, hashlib.sha256).digest()[:MAC_BYTES]


def _sign(secret: bytes, context: bytes, *ids: int) -> str:
    payload = bytes([VERSION]) + b"".join(_varint(i) for i in ids)
    raw = payload + _mac(secret, payload, context)
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def _open(secret: bytes, context: bytes, token: str, count: int) -> tuple[int, ...] | None:
    """The ``count`` ids of an authentic token, or None (forged, truncated, foreign, garbage)."""
    token = token.strip().upper()
    if not token or len(token) > 64:
        return None
    try:
        raw = base64.b32decode(token + "=" * (-len(token) % 8))
    except (binascii.Error, ValueError):
        return None
    if len(raw) < 1 + count + MAC_BYTES or raw[0] != VERSION:
        return None
    if base64.b32encode(raw).decode("ascii").rstrip("=") != token:
        return None  # non-zero padding bits: only the one canonical spelling is accepted
    payload, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac(secret, payload, context)):
        return None
    ids, pos = [], 1
    try:
        for _ in range(count):
            value, pos = _read_varint(payload, pos)
            ids.append(value)
    except ValueError:
        return None
    return tuple(ids) if pos == len(payload) else None


def make_token(secret: bytes, conversation_id: int, contact_id: int) -> str:
    return _sign(secret, _CONTEXT, conversation_id, contact_id)


def verify_token(secret: bytes, token: str) -> TokenClaim | None:
    """The claim of an authentic reply token of this tenant, or None."""
    ids = _open(secret, _CONTEXT, token, 2)
    return TokenClaim(*ids) if ids is not None else None


def make_bounce_address(secret: bytes, tenant_domain: str, outbound_id: int) -> str:
    """``bounce+<token>@<tenant domain>``: the envelope sender of one outbound message (VERP), so any bounce,
    even one that quotes nothing of the original, names the message it returns."""
    return f"{BOUNCE_PREFIX}{_sign(secret, _BOUNCE_CONTEXT, outbound_id)}@{tenant_domain.lower()}"


def verify_bounce_token(secret: bytes, token: str) -> int | None:
    """The outbound message id of an authentic bounce token of this tenant, or None."""
    ids = _open(secret, _BOUNCE_CONTEXT, token, 1)
    return ids[0] if ids is not None else None


def make_reply_address(secret: bytes, tenant_domain: str, conversation_id: int, contact_id: int) -> str:
    """``reply+<token>@<tenant domain>``: the Reply-To (and envelope sender) of outbound mail."""
    token = make_token(secret, conversation_id, contact_id)
    return f"{REPLY_PREFIX}{token}@{tenant_domain.lower()}"


def token_of(address: str, prefix: str = REPLY_PREFIX) -> str | None:
    """The token of a ``reply+<token>@…`` (or ``prefix``) address, or None."""
    local = address.strip().strip("<>").rpartition("@")[0].lower()
    if local.startswith(prefix) and len(local) > len(prefix):
        return local[len(prefix):]
    return None
