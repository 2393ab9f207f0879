"""Who may join a conversation: one policy for every matching step.

A message joins an existing conversation (by reply token, Message-ID chain,
subject tag or subject heuristic) only when its sender is a participant of
that conversation: its contact (or one of the contact's linked addresses),
the contact a reply token was issued to, a staff member of the tenant, or an
address that already wrote to it in a message nobody flagged. Headers, tags
and display names are claims; only an address the tenant has already trusted
is proof. Everything else is handled as a reply token used by another
sender: the unsorted inbox with the conversation as first suggestion (the
default, ``strict_senders``), or attached flagged ``foreign_sender``.
"""

from __future__ import annotations

from collections.abc import Iterable

FOREIGN = "foreign_sender"
BLOCKED = "blocked"  # the sender's address is blocked for the tenant (a conversation of theirs was marked spam)
# Flags that mean a message's author was not proven to belong where the message is, or that nobody wrote it:
# such a message makes no one a participant and is never quoted back to a customer.
UNTRUSTED_FLAGS = frozenset({FOREIGN, BLOCKED, "forged_token", "token_unknown_conversation", "quarantine",
                             "auto_reply", "bounce", "loop"})


def vouched(flags: Iterable[str]) -> bool:
    """True when a stored message's flags say its author was a participant writing in person."""
    return UNTRUSTED_FLAGS.isdisjoint(flags)
