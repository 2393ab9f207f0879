"""Small blobs kept in the database, so they become durable in the same commit as the rows naming them."""

from __future__ import annotations

from sqlalchemy import BigInteger, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from postroom.storage.tables.base import Base


class BlobData(Base):
    """Content-addressed like the file/S3 store: ``sha256`` is the SHA-256 of ``data``, written once."""

    __tablename__ = "blob_data"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes] = mapped_column(LargeBinary)
