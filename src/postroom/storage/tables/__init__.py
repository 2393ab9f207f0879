"""All ORM tables; importing this package fills ``Base.metadata``.

ORM classes never leave ``postroom.storage``: repositories return plain data.
"""

from postroom.storage.tables.apikeys import ApiKey
from postroom.storage.tables.base import Base, utcnow
from postroom.storage.tables.blobs import BlobData
from postroom.storage.tables.conversations import (
    BlockedAddress,
    Contact,
    ContactAddress,
    Conversation,
    Message,
    MessageBounce,
    NotificationEvent,
    StaffUser,
    Team,
    TeamMember,
    ThreadRef,
)
from postroom.storage.tables.inbound import InboundMessage
from postroom.storage.tables.ingress import Mailbox, WebhookSecret
from postroom.storage.tables.outbound import OutboundAttempt, OutboundMessage, OutboundRecipient
from postroom.storage.tables.staff_mail import StaffMailSetting
from postroom.storage.tables.tenants import Tenant, TenantAlias, TenantDomain

__all__ = ["ApiKey", "Base", "BlobData", "BlockedAddress", "Contact", "ContactAddress", "Conversation", "Message",
           "MessageBounce", "NotificationEvent", "OutboundAttempt", "OutboundMessage", "OutboundRecipient", "StaffUser",
           "StaffMailSetting",
           "Team", "TeamMember", "ThreadRef", "InboundMessage", "Mailbox", "Tenant", "TenantAlias", "TenantDomain",
           "WebhookSecret", "utcnow"]
