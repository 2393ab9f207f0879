"""@mentions in internal notes: who of the tenant's staff a note names, and a ``mention`` event for each.

A mention is ``@`` at the start of a word followed by a staff user's e-mail
(``@anna@acme.example``), full name (``@Anna Smith``), name without spaces
or with dots (``@annasmith``, ``@anna.smith``), e-mail local part
(``@anna``) or first name when only one active user has it. Unknown names
are left alone: a note may well contain ``@home``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy.orm import Session

from postroom.storage import conversation_views, conversations, staff, staff_messages
from postroom.storage.staff import StaffUserInfo

AT = re.compile(r"(?<![\w@.+-])@")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
TOKEN = re.compile(r"[\w.-]*\w")
EXCERPT = 200


def _followed_by_word(rest: str, length: int) -> bool:
    return length < len(rest) and (rest[length].isalnum() or rest[length] == "_")


def _aliases(users: Sequence[StaffUserInfo]) -> dict[str, StaffUserInfo | None]:
    """Short spellings -> user; None where two users share a spelling (ambiguous, so nobody)."""
    aliases: dict[str, StaffUserInfo | None] = {}
    for user in users:
        words = user.name.casefold().split()
        spellings = {user.email.split("@")[0].casefold(), "".join(words), ".".join(words)}
        if words:
            spellings.add(words[0])
        for spelling in spellings - {""}:
            aliases[spelling] = user if aliases.get(spelling, user) is user else None
    return aliases


def find_mentions(text: str, users: Sequence[StaffUserInfo]) -> list[StaffUserInfo]:
    """The users ``text`` mentions, in order of first mention, each once."""
    by_email = {u.email.casefold(): u for u in users}
    by_name = sorted((u for u in users if u.name.strip()), key=lambda u: len(u.name), reverse=True)
    aliases = _aliases(users)
    found: dict[int, StaffUserInfo] = {}
    for at in AT.finditer(text):
        rest = text[at.end():]
        user: StaffUserInfo | None = None
        email = EMAIL.match(rest)
        if email:
            user = by_email.get(email.group().rstrip(".").casefold())
        if user is None:
            user = next((u for u in by_name if rest[:len(u.name)].casefold() == u.name.casefold()
                         and not _followed_by_word(rest, len(u.name))), None)
        token = TOKEN.match(rest)
        if user is None and token:
            user = aliases.get(token.group().casefold())
        if user is not None:
            found.setdefault(user.id, user)
    return list(found.values())


def notify_mentions(session: Session, tenant_id: int, conversation_id: int, message_row: int, author_id: int,
                    text: str) -> list[int]:
    """Raise a ``mention`` event for every active user the note names (not its author); the user ids."""
    users = [u for u in staff.list_users(session, tenant_id) if u.active]
    author = next((u for u in users if u.id == author_id), None)
    summary = conversation_views.summaries(session, [conversation_id])[0]
    mentioned = [u for u in find_mentions(text, users) if u.id != author_id]
    for user in mentioned:
        conversations.add_event(session, tenant_id, "mention", "user", user.id, conversation_id=conversation_id,
                                message_id=message_row, reference=summary.reference, subject=summary.subject,
                                by_user_id=author_id, by_name=author.name if author else "",
                                excerpt=" ".join(text.split())[:EXCERPT])
    return [u.id for u in mentioned]


def add_note(session: Session, tenant_id: int, conversation_id: int, author_id: int,
             text: str) -> tuple[int, list[int]]:
    """Store an internal note and tell the staff it @mentions; (message row, mentioned user ids)."""
    row = staff_messages.add_staff_message(session, conversation_id, author_id, kind="note", text=text)
    return row, notify_mentions(session, tenant_id, conversation_id, row, author_id, text)
