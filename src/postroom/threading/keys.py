"""What two messages of one tenant can race on while they are threaded, named as lock keys.

Threading reads conversations by Message-ID (the message's own, its
In-Reply-To and References, a bounce's original) and by sender (the contact,
its conversations of the same subject, its open conversation), and storing a
message writes what later messages read by those same ids and that sender.
A sender is a key by its address here, and by the contact that address
belongs to (``sender_addresses``: storage looks the contact up in the
locking statement), so two addresses merged into one contact serialise, and
a message whose sender's contact another message is creating still waits on
the address. So two messages whose decisions could depend on each other always share a
key, and a worker that serialises on these keys, rather than on the whole
tenant, keeps a busy tenant's unrelated mail in parallel without splitting a
conversation or storing a message twice. Bounces are handled tenant-wide
(every unhandled one of the tenant), hence one key for them all.
"""

from __future__ import annotations

from postroom import messageids as refs
from postroom.model import ParsedMessage


def race_keys(parsed: ParsedMessage) -> list[str]:
    """Lock keys for threading and storing ``parsed`` (sorted, no repeats)."""
    ids = refs.merge_ids([parsed.message_id or ""], refs.parse_ids(parsed.header("In-Reply-To")), parsed.in_reply_to,
                         refs.parse_ids(parsed.header("References")), parsed.references,
                         [parsed.bounce.original_message_id or ""] if parsed.bounce else [])
    keys = {f"id {mid}" for mid in ids}
    keys.update(f"from {address}" for address in sender_addresses(parsed))
    if parsed.bounce is not None:
        keys.add("bounces")
    return sorted(keys)


def sender_addresses(parsed: ParsedMessage) -> list[str]:
    """The addresses threading reads a contact for (the sender, a forward's sender), lower-cased."""
    senders = [parsed.sender, parsed.forward.sender if parsed.forward else None]
    return [sender.address.lower() for sender in senders if sender is not None and sender.address]
