"""Attachment file names never reach the file system: blobs are named by sha256 only."""

from __future__ import annotations

import hashlib
import re
import smtplib
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import func, select

from postroom.app import App
from postroom.service import Service
from postroom.storage.blobs import FileBlobStore
from postroom.storage.tables import BlobData, InboundMessage
from postroom.testing import wait_until

HOSTILE_NAMES = [
    "../../../../../../tmp/postroom-escape.txt", "/etc/cron.d/postroom-escape", "..\\..\\..\\escape.bat",
    "....//....//escape.txt", "%2e%2e%2fescape.txt", "escape\x00.txt", "blobs/../../escape.txt",
    "=?utf-8?q?=2E=2E=2F=2E=2E=2Fescape.txt?=", "CON", "a" * 300 + ".txt",
]
_BLOB_PATH = re.compile(r"^([0-9a-f]{2})/([0-9a-f]{2})/(\1\2[0-9a-f]{60})$")


def _hostile_mail() -> bytes:
    msg = EmailMessage()
    msg["From"] = "attacker@example.net"
    msg["To"] = "inbox@acme.mail.test"
    msg["Subject"] = "attachments"
    msg["Message-ID"] = "<escape@example.net>"
    msg.set_content("see attached")
    for index, name in enumerate(HOSTILE_NAMES):
        msg.add_attachment(f"payload {index}".encode(), maintype="application", subtype="octet-stream",
                           filename=name)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def test_hostile_attachment_names_stay_inside_the_blob_store(service: Service, app: App,
                                                            smtp: Callable[[], smtplib.SMTP]) -> None:
    data_dir = app.settings.data_dir.resolve()
    before = {p for p in Path("/tmp").iterdir()}
    smtp().sendmail("attacker@example.net", ["inbox@acme.mail.test"], _hostile_mail())

    def processed() -> str | None:
        with app.session() as session:
            status = session.scalar(select(InboundMessage.status))
        return status if status in ("done", "parse_failed", "failed") else None

    assert wait_until(processed, timeout=20) == "done"
    blob_root = data_dir / "blobs"
    stored = [p for p in blob_root.rglob("*") if p.is_file()]
    assert len(stored) == len(HOSTILE_NAMES), "one blob per attachment (the small raw message is in blob_data)"
    with app.session() as session:
        assert session.scalar(select(func.count()).select_from(BlobData)) == 1
    for path in stored:
        relative = path.relative_to(blob_root).as_posix()
        assert _BLOB_PATH.match(relative), relative
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name
    outside = [p for p in data_dir.rglob("*") if p.is_file() and blob_root not in p.parents]
    assert all(p.name.startswith("postroom.db") for p in outside), outside
    assert not [p for p in Path("/tmp").iterdir() if "escape" in p.name and p not in before]
    assert not any("escape" in p.name for p in data_dir.parent.rglob("*"))


@pytest.mark.parametrize("key", ["../../etc/passwd", "/etc/passwd", "ab/cd", "A" * 64, "0" * 63, "0" * 64 + "/x",
                                 "..", ""])
def test_blob_store_refuses_anything_but_a_sha256_key(tmp_path: Path, key: str) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    with pytest.raises(ValueError):
        store.get(key)
    with pytest.raises(ValueError):
        store.exists(key)
