"""Tenant API over people: staff users and teams, contacts (link, merge, channel), and spam.

Like every tenant route, a row of another tenant is answered exactly like a
missing one (404): a staff user, team, contact or conversation id reveals
nothing across tenants.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from postroom.errors import NotFound, PostroomError
from postroom.storage import blocks, contacts, staff, staff_mail
from postroom.storage.apikeys import Principal
from postroom.web.auth import tenant_principal
from postroom.web.deps import RowId, db_session, owned
from postroom.web.errors import ERROR_RESPONSES

router = APIRouter(prefix="/api/v1", tags=["people"], responses=ERROR_RESPONSES)
UserId = Annotated[int, Field(ge=1, le=2**31 - 1)]


class UserOut(BaseModel):
    id: int
    email: str
    name: str
    active: bool
    teams: list[str]


class DeactivatedOut(UserOut):
    unassigned: list[int] = Field(description="Conversations (not closed) this user was responsible for")


class TeamIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=320)


class TeamOut(BaseModel):
    id: int
    name: str
    email: str | None
    member_ids: list[int]
    member_emails: list[str]


class MemberIn(BaseModel):
    user_id: UserId


class ContactOut(BaseModel):
    id: int
    name: str
    addresses: list[str]
    channel: str
    locale: str | None
    unit_ref: str | None
    conversations: int
    merged_into_id: int | None


class ContactChange(BaseModel):
    """Only the fields sent change; ``locale: ""`` falls back to the tenant's language."""

    channel: Literal["email", "portal"] | None = None
    locale: str | None = Field(default=None, max_length=16)
    name: str | None = Field(default=None, max_length=200)


class AddressIn(BaseModel):
    address: str = Field(min_length=3, max_length=320)


class MergeIn(BaseModel):
    other_id: int = Field(ge=1, le=2**63 - 1, description="The contact merged into this one")


class SpamOut(BaseModel):
    conversation_id: int
    status: str
    flags: list[str]
    addresses: list[str] = Field(description="Addresses blocked (spam) or unblocked (unspam) by this call")


def _user(info: staff.StaffUserInfo) -> UserOut:
    return UserOut(id=info.id, email=info.email, name=info.name, active=info.active, teams=list(info.teams))


def _team(info: staff.TeamInfo) -> TeamOut:
    return TeamOut(id=info.id, name=info.name, email=info.email, member_ids=list(info.members),
                   member_emails=list(info.member_emails))


def _contact(info: contacts.ContactInfo) -> ContactOut:
    return ContactOut(id=info.id, name=info.name, addresses=list(info.addresses), channel=info.channel,
                      locale=info.locale, unit_ref=info.unit_ref, conversations=info.conversations,
                      merged_into_id=info.merged_into_id)


def own_user(session: Session, principal: Principal, user_id: int) -> staff.StaffUserInfo:
    return owned(staff.get_user, session, principal.tenant_id, user_id, "staff user")


def own_team(session: Session, principal: Principal, team_id: int) -> staff.TeamInfo:
    return owned(staff.get_team, session, principal.tenant_id, team_id, "team")


def own_contact(session: Session, principal: Principal, contact_id: int) -> contacts.ContactInfo:
    return owned(contacts.get_contact, session, principal.tenant_id, contact_id, "contact")


@router.get("/users", response_model=list[UserOut])
def list_users(principal: Principal = Depends(tenant_principal),
               session: Session = Depends(db_session)) -> list[UserOut]:
    """The tenant's staff users, active or not."""
    return [_user(u) for u in staff.list_users(session, principal.tenant_id)]


class MailSettingIn(BaseModel):
    mode: Literal["off", "immediate", "digest"]
    every_minutes: int | None = Field(default=None, ge=1, le=10080, description="Minutes between digests")


class MailSettingOut(BaseModel):
    user_id: int
    mode: str
    every_minutes: int
    last_mailed_at: datetime | None


def _mail_setting(setting: staff_mail.MailSetting) -> MailSettingOut:
    return MailSettingOut(user_id=setting.user_id, mode=setting.mode, every_minutes=setting.every_minutes,
                          last_mailed_at=setting.last_mailed_at)


@router.get("/users/{user_id}/notification-mail", response_model=MailSettingOut)
def get_notification_mail(user_id: RowId, principal: Principal = Depends(tenant_principal),
                          session: Session = Depends(db_session)) -> MailSettingOut:
    """Whether the user gets notification events by mail: off, immediate, or a digest every N minutes."""
    info = own_user(session, principal, user_id)
    return _mail_setting(staff_mail.get_setting(session, principal.tenant_id, info.id))


@router.put("/users/{user_id}/notification-mail", response_model=MailSettingOut)
def set_notification_mail(user_id: RowId, body: MailSettingIn, principal: Principal = Depends(tenant_principal),
                          session: Session = Depends(db_session)) -> MailSettingOut:
    """Turn notification mail on (from now on: no backlog), off, or change the digest interval."""
    info = own_user(session, principal, user_id)
    return _mail_setting(staff_mail.set_mode(session, principal.tenant_id, info.id, body.mode, body.every_minutes))


@router.post("/users/{user_id}/deactivate", response_model=DeactivatedOut)
def deactivate_user(user_id: RowId, principal: Principal = Depends(tenant_principal),
                    session: Session = Depends(db_session)) -> DeactivatedOut:
    """Never assigned again, cannot reply, address no longer trusted; their open conversations are unassigned."""
    info = own_user(session, principal, user_id)
    done = staff.deactivate_user(session, principal.tenant_id, info.email)
    return DeactivatedOut(**_user(done.user).model_dump(), unassigned=list(done.unassigned))


@router.get("/teams", response_model=list[TeamOut])
def list_teams(principal: Principal = Depends(tenant_principal),
               session: Session = Depends(db_session)) -> list[TeamOut]:
    return [_team(t) for t in staff.list_teams(session, principal.tenant_id)]


@router.post("/teams", response_model=TeamOut, status_code=201)
def add_team(team: TeamIn, principal: Principal = Depends(tenant_principal),
             session: Session = Depends(db_session)) -> TeamOut:
    """Create a team (names are unique within the tenant)."""
    return _team(staff.add_team(session, principal.tenant_id, team.name, email=team.email))


@router.post("/teams/{team_id}/members", response_model=TeamOut)
def add_member(team_id: RowId, member: MemberIn, principal: Principal = Depends(tenant_principal),
               session: Session = Depends(db_session)) -> TeamOut:
    own_team(session, principal, team_id)
    own_user(session, principal, member.user_id)
    staff.add_team_member(session, team_id, member.user_id)
    return _team(staff.get_team(session, team_id))


@router.delete("/teams/{team_id}/members/{user_id}", response_model=TeamOut)
def remove_member(team_id: RowId, user_id: RowId, principal: Principal = Depends(tenant_principal),
                  session: Session = Depends(db_session)) -> TeamOut:
    own_team(session, principal, team_id)
    user = own_user(session, principal, user_id)
    if not staff.remove_team_member(session, team_id, user_id):
        raise NotFound(f"{user.email} is not a member of team {team_id}")
    return _team(staff.get_team(session, team_id))


@router.get("/contacts", response_model=list[ContactOut])
def list_contacts(principal: Principal = Depends(tenant_principal), session: Session = Depends(db_session),
                  merged: Annotated[bool, Query(description="Also contacts merged into others")] = False,
                  limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[ContactOut]:
    """The tenant's contacts, newest first."""
    return [_contact(c) for c in contacts.list_contacts(session, principal.tenant, merged=merged, limit=limit)]


@router.get("/contacts/{contact_id}", response_model=ContactOut)
def show_contact(contact_id: RowId, principal: Principal = Depends(tenant_principal),
                 session: Session = Depends(db_session)) -> ContactOut:
    return _contact(own_contact(session, principal, contact_id))


@router.patch("/contacts/{contact_id}", response_model=ContactOut)
def change_contact(contact_id: RowId, change: ContactChange, principal: Principal = Depends(tenant_principal),
                   session: Session = Depends(db_session)) -> ContactOut:
    """Preferred channel (email or portal), language, name."""
    own_contact(session, principal, contact_id)
    return _contact(contacts.set_contact(session, contact_id, channel=change.channel, locale=change.locale,
                                         name=change.name))


@router.post("/contacts/{contact_id}/addresses", response_model=ContactOut)
def link_address(contact_id: RowId, body: AddressIn, principal: Principal = Depends(tenant_principal),
                 session: Session = Depends(db_session)) -> ContactOut:
    """Link another address; refused (400) when another contact has it: merge the two instead."""
    own_contact(session, principal, contact_id)
    return _contact(contacts.add_contact_address(session, contact_id, body.address))


@router.post("/contacts/{contact_id}/merge", response_model=ContactOut)
def merge_contact(contact_id: RowId, body: MergeIn, principal: Principal = Depends(tenant_principal),
                  session: Session = Depends(db_session)) -> ContactOut:
    """Merge ``other_id`` into this contact: addresses, conversations, messages and future mail follow."""
    own_contact(session, principal, contact_id)
    own_contact(session, principal, body.other_id)
    if body.other_id == contact_id:
        raise PostroomError(f"contact {contact_id} cannot be merged into itself")
    return _contact(contacts.merge_contacts(session, keep_id=contact_id, drop_id=body.other_id))


@router.post("/conversations/{conversation_id}/spam", response_model=SpamOut)
def mark_spam(conversation_id: RowId, principal: Principal = Depends(tenant_principal),
              session: Session = Depends(db_session)) -> SpamOut:
    """Close the conversation, flag it spam and block its contact's addresses: their mail waits in the inbox."""
    change = blocks.mark_spam(session, conversation_id, tenant_id=principal.tenant_id)
    return SpamOut(conversation_id=change.conversation_id, status=change.status, flags=list(change.flags),
                   addresses=list(change.addresses))


@router.post("/conversations/{conversation_id}/unspam", response_model=SpamOut)
def unmark_spam(conversation_id: RowId, principal: Principal = Depends(tenant_principal),
                session: Session = Depends(db_session)) -> SpamOut:
    """Undo spam: reopen the conversation and unblock its contact's addresses."""
    change = blocks.unmark_spam(session, conversation_id, tenant_id=principal.tenant_id)
    return SpamOut(conversation_id=change.conversation_id, status=change.status, flags=list(change.flags),
                   addresses=list(change.addresses))
