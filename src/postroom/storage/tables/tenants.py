"""Tenants and the addresses they receive mail at."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from postroom.storage.tables.base import Base, utcnow


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    secret: Mapped[str] = mapped_column(String(128))
    settings: Mapped[dict] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    domains: Mapped[list[TenantDomain]] = relationship(back_populates="tenant", cascade="all, delete-orphan")
    aliases: Mapped[list[TenantAlias]] = relationship(back_populates="tenant", cascade="all, delete-orphan")


class TenantDomain(Base):
    """A custom domain a tenant also receives mail at."""

    __tablename__ = "tenant_domains"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    domain: Mapped[str] = mapped_column(String(253), unique=True)

    tenant: Mapped[Tenant] = relationship(back_populates="domains")


class TenantAlias(Base):
    """An extra local part (e.g. ``support``) delivered like ``inbox``."""

    __tablename__ = "tenant_aliases"
    __table_args__ = (UniqueConstraint("tenant_id", "local_part"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    local_part: Mapped[str] = mapped_column(String(64))

    tenant: Mapped[Tenant] = relationship(back_populates="aliases")
