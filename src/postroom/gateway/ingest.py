"""Ingest without SMTP: a .eml file, a directory of them, an mbox or a Maildir.

Messages go through the same durable intake as SMTP mail (blob + row, one
transaction per batch), addressed to the tenant's ``inbox``.
"""

from __future__ import annotations

import email.utils
import mailbox
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from postroom.addresses import INBOX
from postroom.errors import PostroomError
from postroom.model import Envelope
from postroom.storage.blobs import BlobStore
from postroom.storage.intake import IntakeItem, store_batch

BATCH = 200


@dataclass(frozen=True)
class IngestResult:
    stored: int
    ids: tuple[int, ...]
    skipped: tuple[str, ...]


def _is_maildir(path: Path) -> bool:
    return path.is_dir() and (path / "cur").is_dir() and (path / "new").is_dir()


def _looks_like_mbox(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(5) == b"From "


def iter_messages(path: Path) -> Iterator[tuple[str, bytes]]:
    """Yield (label, raw bytes) for every message under ``path``, whatever the format."""
    if not path.exists():
        raise PostroomError(f"{path} does not exist")
    if _is_maildir(path):
        box = mailbox.Maildir(path, factory=None, create=False)
        for key in sorted(box.keys()):
            yield f"{path}:{key}", box.get_bytes(key)
    elif path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
            yield from iter_messages(file)
    elif _looks_like_mbox(path):
        box = mailbox.mbox(path, factory=None, create=False)
        for index, key in enumerate(box.keys()):
            yield f"{path}#{index + 1}", box.get_bytes(key, from_=False)
    else:
        yield str(path), path.read_bytes()


def _envelope_sender(raw: bytes) -> str:
    header = email.message_from_bytes(raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0])
    for name in ("Return-Path", "Sender", "From"):
        pairs = email.utils.getaddresses([header.get(name, "")])
        if pairs and pairs[0][1]:
            return pairs[0][1]
    return ""


def ingest(sessions: sessionmaker[Session], blobs: BlobStore, *, tenant_id: int, inbox_address: str,
           path: Path, progress: Callable[[int, str], None] | None = None) -> IngestResult:
    """Store every message under ``path`` for the tenant; empty files are skipped and reported."""
    ids: list[int] = []
    skipped: list[str] = []
    batch: list[IntakeItem] = []
    count = 0

    def flush() -> None:
        for item_ids in store_batch(sessions, blobs, batch):
            ids.extend(item_ids)
        batch.clear()

    for label, raw in iter_messages(path):
        count += 1
        if not raw.strip():
            skipped.append(f"{label}: empty")
            continue
        batch.append(IntakeItem(
            raw=raw,
            envelope=Envelope(mail_from=_envelope_sender(raw), rcpt_tos=(inbox_address,), peer="ingest",
                              received_at=datetime.now(UTC)),
            tenant_rcpts={tenant_id: (inbox_address,)}, source="ingest",
        ))
        if len(batch) >= BATCH:
            flush()
        if progress:
            progress(count, label)
    if batch:
        flush()
    return IngestResult(stored=len(ids), ids=tuple(ids), skipped=tuple(skipped))


def inbox_address_of(slug: str, mail_domain: str) -> str:
    return f"{INBOX}@{slug}.{mail_domain}"
