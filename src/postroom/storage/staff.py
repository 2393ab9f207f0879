"""Staff verbs: users (name, e-mail, signature) and teams of a tenant.

A deactivated user stays (their messages keep an author) but is no longer
staff: never assigned, cannot reply, and their address is trusted neither as
a participant nor for forwards (``active_addresses``, cached per tenant and
dropped by ``tenant_changed`` on every change here).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from postroom.errors import NotFound, PostroomError
from postroom.storage.tables import Conversation, StaffUser, Team, TeamMember, Tenant
from postroom.storage.tenants import TenantCache, tenant_changed


@dataclass(frozen=True)
class StaffUserInfo:
    id: int
    tenant_id: int
    email: str
    name: str
    signature_text: str
    signature_html: str  # "" when the user has no HTML signature
    active: bool
    teams: tuple[str, ...] = ()


@dataclass(frozen=True)
class TeamInfo:
    id: int
    tenant_id: int
    name: str
    email: str | None
    members: tuple[int, ...]
    member_emails: tuple[str, ...] = ()


@dataclass(frozen=True)
class Deactivated:
    """A deactivated user and the conversations they were responsible for, now unassigned."""

    user: StaffUserInfo
    unassigned: tuple[int, ...]


def _tenant_id(session: Session, tenant: str | int) -> int:
    if isinstance(tenant, int):
        return tenant
    found = session.scalar(select(Tenant.id).where(Tenant.slug == tenant.lower()))
    if found is None:
        raise NotFound(f"no tenant {tenant!r}; create it with: postroom tenant add {tenant}")
    return found


def _info(session: Session, user: StaffUser) -> StaffUserInfo:
    teams = session.scalars(select(Team.name).join(TeamMember, TeamMember.team_id == Team.id)
                            .where(TeamMember.user_id == user.id).order_by(Team.name))
    return StaffUserInfo(user.id, user.tenant_id, user.email, user.name, user.signature_text,
                         user.signature_html or "", user.active, tuple(teams))


def add_user(session: Session, tenant: str | int, *, email: str, name: str, signature_text: str = "",
             signature_html: str | None = None) -> StaffUserInfo:
    """Create a staff user; the e-mail is unique within the tenant."""
    tenant_id = _tenant_id(session, tenant)
    email = email.strip().lower()
    if "@" not in email or " " in email:
        raise PostroomError(f"{email!r} is not an e-mail address")
    user = StaffUser(tenant_id=tenant_id, email=email, name=name.strip(), signature_text=signature_text,
                     signature_html=signature_html, active=True)
    try:
        with session.begin_nested():
            session.add(user)
            session.flush()
    except IntegrityError as exc:
        raise PostroomError(f"a staff user {email} already exists for this tenant") from exc
    tenant_changed(session, tenant_id)
    return _info(session, user)


def update_user(session: Session, user_id: int, **changes: object) -> StaffUserInfo:
    """Change name, signature_text, signature_html or active."""
    user = session.get(StaffUser, user_id)
    if user is None:
        raise NotFound(f"no staff user {user_id}")
    for name, value in changes.items():
        if name not in ("name", "signature_text", "signature_html", "active"):
            raise PostroomError(f"cannot change {name!r} of a staff user")
        setattr(user, name, value)
    session.flush()
    tenant_changed(session, user.tenant_id)
    return _info(session, user)


def get_user(session: Session, user_id: int) -> StaffUserInfo:
    user = session.get(StaffUser, user_id)
    if user is None:
        raise NotFound(f"no staff user {user_id}")
    return _info(session, user)


def user_by_email(session: Session, tenant: str | int, email: str) -> StaffUserInfo | None:
    tenant_id = _tenant_id(session, tenant)
    user = session.scalar(select(StaffUser).where(StaffUser.tenant_id == tenant_id,
                                                  StaffUser.email == email.strip().lower()))
    return _info(session, user) if user else None


def list_users(session: Session, tenant: str | int) -> list[StaffUserInfo]:
    tenant_id = _tenant_id(session, tenant)
    users = session.scalars(select(StaffUser).where(StaffUser.tenant_id == tenant_id).order_by(StaffUser.email))
    return [_info(session, u) for u in users]


def _load_active_addresses(session: Session, tenant_id: int) -> frozenset[str]:
    users = StaffUser.__table__.c
    session.flush()
    return frozenset(session.connection().execute(
        select(users.email).where(users.tenant_id == tenant_id, users.active.is_(True))).scalars())


_active_addresses: TenantCache[frozenset[str]] = TenantCache(_load_active_addresses)


def active_addresses(session: Session, tenant_id: int) -> frozenset[str]:
    """The e-mail addresses of the tenant's active staff (the staff-forward check; cached, see ``TenantCache``)."""
    return _active_addresses.get(session, tenant_id)


def deactivate_user(session: Session, tenant: str | int, email: str) -> Deactivated:
    """Make a staff user inactive and unassign their conversations that are not closed.

    Left assigned, those conversations would wait for someone who no longer
    answers; unassigned, they fall back to their team or the tenant.
    """
    tenant_id = _tenant_id(session, tenant)
    user = session.scalar(select(StaffUser).where(StaffUser.tenant_id == tenant_id,
                                                  StaffUser.email == email.strip().lower()))
    if user is None:
        raise NotFound(f"no staff user {email} in this tenant; list them with: postroom user list TENANT")
    user.active = False
    owned = tuple(session.scalars(select(Conversation.id).where(
        Conversation.tenant_id == tenant_id, Conversation.responsible_user_id == user.id,
        Conversation.status != "closed").order_by(Conversation.id)))
    if owned:
        session.execute(update(Conversation).where(Conversation.id.in_(owned)).values(responsible_user_id=None))
    session.flush()
    tenant_changed(session, tenant_id)
    return Deactivated(_info(session, user), owned)


def _load_inactive_addresses(session: Session, tenant_id: int) -> frozenset[str]:
    users = StaffUser.__table__.c
    session.flush()
    return frozenset(session.connection().execute(
        select(users.email).where(users.tenant_id == tenant_id, users.active.is_(False))).scalars())


_inactive_addresses: TenantCache[frozenset[str]] = TenantCache(_load_inactive_addresses)


def inactive_addresses(session: Session, tenant_id: int) -> frozenset[str]:
    """Addresses of deactivated staff: what they wrote as staff no longer makes them participants."""
    return _inactive_addresses.get(session, tenant_id)


def add_team(session: Session, tenant: str | int, name: str, *, email: str | None = None,
             members: tuple[int, ...] = ()) -> TeamInfo:
    tenant_id = _tenant_id(session, tenant)
    name = " ".join(name.split())
    if not name or len(name) > 200:
        raise PostroomError("a team name needs 1 to 200 characters")
    team = Team(tenant_id=tenant_id, name=name, email=email)
    try:
        with session.begin_nested():
            session.add(team)
            session.flush()
    except IntegrityError as exc:
        raise PostroomError(f"a team {name!r} already exists for this tenant") from exc
    for user_id in members:
        add_team_member(session, team.id, user_id)
    tenant_changed(session, tenant_id)
    return get_team(session, team.id)


def add_team_member(session: Session, team_id: int, user_id: int) -> None:
    team, user = session.get(Team, team_id), session.get(StaffUser, user_id)
    if team is None or user is None or team.tenant_id != user.tenant_id:
        raise NotFound(f"no team {team_id} with a staff user {user_id} of the same tenant")
    if session.get(TeamMember, (team_id, user_id)) is None:
        session.add(TeamMember(team_id=team_id, user_id=user_id))
        session.flush()


def remove_team_member(session: Session, team_id: int, user_id: int) -> bool:
    """True when the user was a member."""
    removed = session.execute(delete(TeamMember).where(TeamMember.team_id == team_id, TeamMember.user_id == user_id))
    session.flush()
    return bool(removed.rowcount)


def get_team(session: Session, team_id: int) -> TeamInfo:
    team = session.get(Team, team_id)
    if team is None:
        raise NotFound(f"no team {team_id}")
    rows = session.execute(select(TeamMember.user_id, StaffUser.email)
                           .join(StaffUser, StaffUser.id == TeamMember.user_id)
                           .where(TeamMember.team_id == team_id).order_by(StaffUser.email)).all()
    return TeamInfo(team.id, team.tenant_id, team.name, team.email, tuple(r[0] for r in rows),
                    tuple(r[1] for r in rows))


def list_teams(session: Session, tenant: str | int) -> list[TeamInfo]:
    tenant_id = _tenant_id(session, tenant)
    ids = session.scalars(select(Team.id).where(Team.tenant_id == tenant_id).order_by(Team.name))
    return [get_team(session, team_id) for team_id in ids]


def named_team(session: Session, tenant: str | int, name: str) -> TeamInfo:
    """The team called ``name``, NotFound saying how to create it."""
    found = team_by_name(session, tenant, " ".join(name.split()))
    if found is None:
        raise NotFound(f"no team {name!r} in this tenant; create it with: postroom team add TENANT {name!r}")
    return found


def named_user(session: Session, tenant: str | int, email: str) -> StaffUserInfo:
    found = user_by_email(session, tenant, email)
    if found is None:
        raise NotFound(f"no staff user {email} in this tenant; add one with: postroom user add TENANT "
                       f"--email {email} --name NAME")
    return found


def team_by_name(session: Session, tenant: str | int, name: str) -> TeamInfo | None:
    tenant_id = _tenant_id(session, tenant)
    team_id = session.scalar(select(Team.id).where(Team.tenant_id == tenant_id, Team.name == name.strip()))
    return get_team(session, team_id) if team_id else None


def is_member(session: Session, team_id: int, user_id: int) -> bool:
    return session.get(TeamMember, (team_id, user_id)) is not None
