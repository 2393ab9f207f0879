"""What two messages of one tenant can race on while they are threaded, named as lock keys.

Threading reads conversations by Message-ID (the message's own, its
In-Reply-To and References, a bounce's original) and by sender (the contact,
its conversations of the same subject, its open conversation), and storing a
message writes what later messages read by those same ids and that sender.
So two messages whose decisions could depend on each other always share a
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
    senders = [parsed.sender, parsed.forward.sender if parsed.forward else None]
    keys.update(f"from {sender.address.lower()}" for sender in senders if sender is not None and sender.address)
    if parsed.bounce is not None:
        keys.add("bounces")
    return sorted(keys)


def conversation_key(conversation_id: int) -> str:
    """The key of a conversation a message is attached to (its status, flags and loop count change)."""
    return f"conversation {conversation_id}"
