"""Transaction-scoped advisory locks on named keys of a tenant (PostgreSQL; SQLite's BEGIN IMMEDIATE serialises).

The inbound pipeline serialises a message's threading on what it shares with
other messages (``threading.keys``), not on its tenant. Each key is named
with its tenant and hashed by PostgreSQL (``hashtextextended``) to one 64-bit
lock; all of a message's keys are taken in one statement, in ascending order,
so two workers never wait on each other in a cycle. The conversation a
message joins is locked later, as its row (``FOR UPDATE``, in storage): a
worker that holds it takes no key after it, so it cannot close a cycle either.

The same statement adds the key ``contact <id>`` of each sender address that
belongs to a contact, looked up in ``contact_addresses`` as threading looks it
up: the contact costs no round trip of its own.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT, TEXT
from sqlalchemy.orm import Session

from postroom.storage.contacts import normalize_address

# ORDER BY: PostgreSQL runs a volatile function of the select list after sorting, so the locks come in key order.
_LOCK = text(
    "SELECT pg_advisory_xact_lock(k) FROM ("
    " SELECT hashtextextended(:tenant || ' ' || name, 0) AS k FROM unnest(:names) AS name"
    " UNION SELECT hashtextextended(:tenant || ' contact ' || contact_id, 0) FROM contact_addresses"
    "  WHERE tenant_id = :tenant_id AND address = ANY(:addresses)"
    ") AS locks ORDER BY k"
).bindparams(bindparam("names", type_=ARRAY(TEXT)), bindparam("addresses", type_=ARRAY(TEXT)),
             bindparam("tenant_id", type_=BIGINT))


def lock(session: Session, tenant_id: int, keys: Iterable[str], senders: Iterable[str] = ()) -> None:
    """Hold every key, and the contact key of each sender address that has a contact, until the transaction ends;
    waits for any other transaction holding one."""
    if session.get_bind().dialect.name != "postgresql":
        return
    names = sorted(set(keys))
    addresses = sorted({normalize_address(address) for address in senders})
    if names or addresses:
        session.execute(_LOCK, {"tenant": str(tenant_id), "tenant_id": tenant_id, "names": names,
                                "addresses": addresses})
