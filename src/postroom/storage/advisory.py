"""Transaction-scoped advisory locks on named keys of a tenant (PostgreSQL; SQLite's BEGIN IMMEDIATE serialises).

The inbound pipeline serialises a message's threading on what it shares with
other messages (``threading.keys``), not on its tenant. Each key is hashed
with its tenant to one 64-bit lock; all of a message's keys are taken in one
statement, in ascending order, so two workers never wait on each other in a
cycle. A later ``lock`` in the same transaction (the conversation a message
joins) is its last, so it cannot close a cycle either.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT
from sqlalchemy.orm import Session

# ORDER BY: PostgreSQL runs a volatile function of the select list after sorting, so the locks come in key order.
_LOCK = text("SELECT pg_advisory_xact_lock(k) FROM unnest(:keys) AS k ORDER BY k").bindparams(
    bindparam("keys", type_=ARRAY(BIGINT)))


def lock_key(tenant_id: int, key: str) -> int:
    """A signed 64-bit lock id for ``key`` within the tenant."""
    digest = hashlib.blake2b(f"{tenant_id} {key}".encode(), digest_size=8, person=b"postroom").digest()
    return int.from_bytes(digest, "big", signed=True)


def lock(session: Session, tenant_id: int, keys: Iterable[str]) -> None:
    """Hold every key until the transaction ends; waits for any other transaction holding one."""
    if session.get_bind().dialect.name != "postgresql":
        return
    ids = sorted({lock_key(tenant_id, key) for key in keys})
    if ids:
        session.execute(_LOCK, {"keys": ids})
