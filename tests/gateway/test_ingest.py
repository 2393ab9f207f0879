"""Ingest without SMTP: files, directories, mbox and Maildir through the durable path."""

from __future__ import annotations

import mailbox
from pathlib import Path

from sqlalchemy import func, select

from postroom import flow
from postroom.gateway.ingest import ingest, iter_messages
from postroom.storage.tables import InboundMessage
from postroom.testing import make_eml

INBOX = "inbox@acme.mail.test"


def _mbox(path: Path, count: int) -> Path:
    box = mailbox.mbox(path)
    for n in range(count):
        box.add(make_eml(subject=f"mbox message {n}", message_id=f"<mbox-{n}@example.com>",
                         body=f"From the start of a line {n}\n"))
    box.flush()
    box.close()
    return path


def _count(app) -> int:
    with app.session() as session:
        return session.scalar(select(func.count()).select_from(InboundMessage))


def test_ingest_of_an_mbox_of_n_messages_gives_n_rows(app, tenant_ids, tmp_path):
    path = _mbox(tmp_path / "archive.mbox", 25)
    seen: list[int] = []
    result = ingest(app.sessions, app.blobs, tenant_id=tenant_ids["acme"], inbox_address=INBOX, path=path,
                    progress=lambda count, _label: seen.append(count))
    assert result.stored == 25 and _count(app) == 25
    assert seen[-1] == 25
    statuses = [flow.process_inbound(app, i) for i in result.ids]
    assert statuses == ["done"] * 25
    with app.session() as session:
        subjects = set(session.scalars(select(InboundMessage.subject)))
    assert subjects == {f"mbox message {n}" for n in range(25)}


def test_ingesting_the_same_mbox_twice_stores_nothing_new(app, tenant_ids, tmp_path):
    path = _mbox(tmp_path / "again.mbox", 5)
    first = ingest(app.sessions, app.blobs, tenant_id=tenant_ids["acme"], inbox_address=INBOX, path=path)
    second = ingest(app.sessions, app.blobs, tenant_id=tenant_ids["acme"], inbox_address=INBOX, path=path)
    assert first.ids == second.ids and _count(app) == 5


def test_maildir_directory_and_single_file_are_read(tmp_path):
    maildir = mailbox.Maildir(tmp_path / "Maildir", create=True)
    for n in range(3):
        maildir.add(make_eml(subject=f"maildir {n}"))
    folder = tmp_path / "emls"
    folder.mkdir()
    for n in range(2):
        (folder / f"{n}.eml").write_bytes(make_eml(subject=f"eml {n}"))
    assert len(list(iter_messages(tmp_path / "Maildir"))) == 3
    assert len(list(iter_messages(folder))) == 2
    [(label, raw)] = list(iter_messages(folder / "0.eml"))
    assert label.endswith("0.eml") and b"Subject: eml 0" in raw


def test_empty_files_are_skipped_and_reported(app, tenant_ids, tmp_path):
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "empty.eml").write_bytes(b"\r\n")
    (folder / "good.eml").write_bytes(make_eml())
    result = ingest(app.sessions, app.blobs, tenant_id=tenant_ids["acme"], inbox_address=INBOX, path=folder)
    assert result.stored == 1
    assert len(result.skipped) == 1 and "empty.eml: empty" in result.skipped[0]
