"""Conversations and everything around them: staff, teams, contacts, messages, events, bounces.

Every row carries ``tenant_id`` and every lookup index starts with it, so a
query of one tenant can never see another's rows. Threading settings live in
the tenant's ``settings`` JSON (see ``postroom.threading_policy``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from postroom.statuses import CONVERSATION_STATUSES
from postroom.storage.tables.base import BIG_ID, Base, utcnow

STATUSES = CONVERSATION_STATUSES


class StaffUser(Base):
    """A staff member of a tenant: who answers, who is responsible, whose signature goes under replies."""

    __tablename__ = "staff_users"
    __table_args__ = (UniqueConstraint("tenant_id", "email"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200), default="")
    signature_text: Mapped[str] = mapped_column(Text, default="")
    signature_html: Mapped[str | None] = mapped_column(Text, default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Team(Base):
    __tablename__ = "teams"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320), default=None)


class TeamMember(Base):
    __tablename__ = "team_members"

    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"), primary_key=True)


class Contact(Base):
    """A customer. Created for an unknown sender; ``merged_into_id`` is set when merged into another."""

    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    unit_ref: Mapped[str | None] = mapped_column(String(200), default=None)
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"), default=None)
    channel: Mapped[str] = mapped_column(String(10), default="email", server_default="email")  # email | portal
    locale: Mapped[str | None] = mapped_column(String(16), default=None)  # None: the tenant's
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ContactAddress(Base):
    """One e-mail address of a contact; unique per tenant, so an address names one contact."""

    __tablename__ = "contact_addresses"
    __table_args__ = (UniqueConstraint("tenant_id", "address"),)

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    address: Mapped[str] = mapped_column(String(320))
    primary: Mapped[bool] = mapped_column(Boolean, default=False)


class BlockedAddress(Base):
    """An address whose mail goes to the unsorted inbox flagged ``blocked`` (set by marking a conversation spam)."""

    __tablename__ = "blocked_addresses"
    __table_args__ = (UniqueConstraint("tenant_id", "address"),)

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(320))
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("conversations.id", ondelete="SET NULL"),
                                                        default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Conversation(Base):
    """A conversation between a tenant's staff and one contact. ``status`` is internal only."""

    __tablename__ = "conversations"
    __table_args__ = (
        UniqueConstraint("tenant_id", "reference"),
        # threading lookups (storage.threading_lookup.SqlLookup): equality columns, then the activity they sort by
        Index("ix_conversations_tenant_contact_subject_activity", "tenant_id", "contact_id", "subject_key",
              "last_activity_at"),
        Index("ix_conversations_tenant_subject_activity", "tenant_id", "subject_key", "last_activity_at"),
        Index("ix_conversations_tenant_contact_activity", "tenant_id", "contact_id", "last_activity_at"),
        Index("ix_conversations_tenant_status_activity", "tenant_id", "status", "last_activity_at"),
        Index("ix_conversations_tenant_activity", "tenant_id", "last_activity_at"),
        Index("ix_conversations_tenant_category", "tenant_id", "category"),
        Index("ix_conversations_tenant_responsible_user", "tenant_id", "responsible_user_id"),
        Index("ix_conversations_tenant_responsible_team", "tenant_id", "responsible_team_id"),
        Index("ix_conversations_tenant_unit", "tenant_id", "unit_ref"),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    reference: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(Text, default="")
    subject_key: Mapped[str] = mapped_column(String(500), default="")
    category: Mapped[str | None] = mapped_column(String(100), default=None)
    status: Mapped[str] = mapped_column(String(20), default="open")
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"), index=True)
    responsible_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff_users.id", ondelete="SET NULL"), default=None)
    responsible_team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"),
                                                            default=None)
    unit_ref: Mapped[str | None] = mapped_column(String(200), default=None)
    tags: Mapped[list] = mapped_column(default=list)
    flags: Mapped[list] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    last_activity_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_customer_at: Mapped[datetime | None] = mapped_column(default=None)
    last_staff_at: Mapped[datetime | None] = mapped_column(default=None)
    closed_at: Mapped[datetime | None] = mapped_column(default=None)
    # the older conversation a reply-looking first message picked up again, past the subject window
    follows_id: Mapped[int | None] = mapped_column(ForeignKey("conversations.id", ondelete="SET NULL"), default=None)


class Message(Base):
    """One message of a conversation, or of the tenant's unsorted inbox (``conversation_id`` NULL).

    Unique on (tenant, Message-ID): the same mail delivered twice is one message.
    """

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("tenant_id", "message_id"),
        Index("ix_messages_conversation_id", "conversation_id", "id"),
        Index("ix_messages_tenant_inbox", "tenant_id", "conversation_id"),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("conversations.id", ondelete="SET NULL"))
    direction: Mapped[str] = mapped_column(String(3), default="in")
    kind: Mapped[str] = mapped_column(String(10), default="email")
    author_contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"),
                                                          default=None, index=True)
    author_user_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"),
                                                       default=None)
    author_name: Mapped[str] = mapped_column(String(200), default="")
    author_email: Mapped[str] = mapped_column(String(320), default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    text: Mapped[str] = mapped_column(Text, default="")
    html: Mapped[str | None] = mapped_column(Text, default=None)
    reply_text: Mapped[str] = mapped_column(Text, default="")
    quoted_text: Mapped[str] = mapped_column(Text, default="")
    signature: Mapped[str] = mapped_column(Text, default="")
    message_id: Mapped[str | None] = mapped_column(String(255), default=None)
    in_reply_to: Mapped[list] = mapped_column(default=list)
    references: Mapped[list] = mapped_column(default=list)
    attachments: Mapped[list] = mapped_column(default=list)
    is_read: Mapped[bool] = mapped_column(Boolean, default=False)
    is_answered: Mapped[bool] = mapped_column(Boolean, default=False)
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_messages.id", ondelete="SET NULL"),
                                                   unique=True, default=None)
    flags: Mapped[list] = mapped_column(default=list)
    matched_via: Mapped[str] = mapped_column(String(32), default="")
    forward: Mapped[dict | None] = mapped_column(default=None)
    forwarded_by: Mapped[str | None] = mapped_column(String(320), default=None)
    suggestions: Mapped[list] = mapped_column(default=list)
    # other contacts with the sender's display name, when the sender's address was new: [{contact_id, address}]
    similar_contacts: Mapped[list | None] = mapped_column(default=None)


class ThreadRef(Base):
    """An id a stored message referenced: lets a reply whose parent was never seen meet its siblings."""

    __tablename__ = "thread_refs"
    __table_args__ = (Index("ix_thread_refs_tenant_ref", "tenant_id", "ref"),)

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    ref: Mapped[str] = mapped_column(String(255))
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)


class NotificationEvent(Base):
    """Someone must be told something: staff of a new customer message, a customer of a moved message."""

    __tablename__ = "notification_events"
    __table_args__ = (Index("ix_notification_events_tenant_pending", "tenant_id", "delivered_at"),
                      Index("ix_notification_events_tenant_recipient", "tenant_id", "recipient_type", "recipient_id"))

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    recipient_type: Mapped[str] = mapped_column(String(10))  # user | team | tenant | contact | operator
    recipient_id: Mapped[int | None] = mapped_column(default=None)
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"),
                                                        default=None, index=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), default=None)
    payload: Mapped[dict] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)


class MessageBounce(Base):
    """A bounce recorded against the outbound message it returned (for the outbound side to act on)."""

    __tablename__ = "message_bounces"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    bounce_message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"),
                                                          default=None)
    permanent: Mapped[list] = mapped_column(default=list)
    temporary: Mapped[list] = mapped_column(default=list)
    status: Mapped[str | None] = mapped_column(String(16), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    handled_at: Mapped[datetime | None] = mapped_column(default=None)
