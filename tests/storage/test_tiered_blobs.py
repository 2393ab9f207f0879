"""Small mail in blob_data, committed with its rows; large mail in the file store. Through the real SMTP server."""

from __future__ import annotations

import os
import smtplib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, text

from postroom.service import Service
from postroom.settings import Settings
from postroom.storage import apikeys
from postroom.storage.blobs import FileBlobStore, sha256_hex
from postroom.storage.tables import BlobData, InboundMessage, Message
from postroom.testing import wait_until

INLINE_MAX = 4096
SENDER = "sender@example.com"
RCPT = "inbox@acme.mail.test"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(inline_blob_max=INLINE_MAX)


def sized(size: int, tag: str) -> bytes:
    """A message of exactly ``size`` bytes with CRLF line ends (stored byte for byte as sent)."""
    head = (f"From: Jean <jean@example.com>\r\nTo: {RCPT}\r\nSubject: {tag}\r\n"
            f"Message-ID: <{tag}@example.com>\r\n\r\n").encode()
    left = size - len(head)
    assert left >= 4
    lines, rest = divmod(left, 64)
    if rest and rest < 2:
        lines, rest = lines - 1, rest + 64
    body = (b"y" * 62 + b"\r\n") * lines + (b"z" * (rest - 2) + b"\r\n" if rest else b"")
    raw = head + body
    assert len(raw) == size
    return raw


def deliver(service: Service, raw: bytes) -> tuple[int, bytes]:
    """One SMTP transaction; the reply to the end of DATA."""
    with smtplib.SMTP("127.0.0.1", service.smtp_port, timeout=30) as client:
        client.ehlo()
        client.mail(SENDER)
        assert client.rcpt(RCPT)[0] == 250
        return client.data(raw)


def inline_keys(service: Service) -> set[str]:
    with service.app.session() as session:
        return set(session.scalars(select(BlobData.sha256)))


def file_exists(service: Service, key: str) -> bool:
    return (service.settings.data_dir / "blobs" / key[:2] / key[2:4] / key).is_file()


def rows(service: Service) -> list[tuple[int, str, str]]:
    with service.app.session() as session:
        return list(session.execute(select(InboundMessage.id, InboundMessage.sha256, InboundMessage.status)
                                    .order_by(InboundMessage.id)).tuples())


def all_done(service: Service, count: int) -> bool:
    found = rows(service)
    return len(found) == count and {status for _, _, status in found} == {"done"}


@pytest.fixture
def second_service(settings: Settings) -> Iterator[list[Service]]:
    """Services a test starts itself (on the same data), stopped at the end."""
    started: list[Service] = []
    yield started
    for svc in started:
        svc.stop()


def test_threshold_boundary_and_the_pipeline_reads_both_tiers(service: Service) -> None:
    at_limit, over = sized(INLINE_MAX, "at-limit"), sized(INLINE_MAX + 1, "over-limit")
    assert deliver(service, at_limit)[0] == 250
    assert deliver(service, over)[0] == 250
    small, large = sha256_hex(at_limit), sha256_hex(over)
    assert inline_keys(service) == {small}
    assert not file_exists(service, small) and file_exists(service, large)
    assert service.app.blobs.get(small) == at_limit and service.app.blobs.get(large) == over
    assert service.app.blobs.exists(small) and service.app.blobs.exists(large)
    wait_until(lambda: all_done(service, 2), timeout=20)  # flow.process_inbound read both raws


def test_http_raw_download_and_mbox_export_read_inline_blobs(service: Service) -> None:
    raw = sized(2000, "inline-reader")
    code, reply = deliver(service, raw)
    assert code == 250
    inbound_id = int(reply.rsplit(b" ", 1)[1])
    wait_until(lambda: all_done(service, 1), timeout=20)
    with service.app.session() as session:
        key = apikeys.create_key(session, "acme", "tests")[1]
        conversation_id = session.scalar(select(Message.conversation_id).where(Message.inbound_id == inbound_id))
    assert sha256_hex(raw) in inline_keys(service)
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=service.http_url, headers=headers, timeout=10) as client:
        download = client.get(f"/api/v1/inbound/{inbound_id}/raw")
        assert download.status_code == 200 and download.content == raw
        assert conversation_id is not None
        mbox = client.get(f"/api/v1/conversations/{conversation_id}/export.mbox")
        assert mbox.status_code == 200 and b"Subject: inline-reader" in mbox.content


def test_same_bytes_across_tiers_are_one_row(service: Service, settings: Settings,
                                             second_service: list[Service]) -> None:
    """The threshold may change between a delivery and its retry: still one row per tenant, readable.

    (The bytes may then be kept in both tiers: the row thread does not ask the file/S3 store first,
    which would cost an S3 round trip per small message.)"""
    first, second = sized(1000, "inline-first"), sized(1200, "file-first")
    code, reply_inline = deliver(service, first)
    assert code == 250
    service.stop()
    files_only = Service(settings.replace(inline_blob_max=0)).start()
    second_service.append(files_only)
    assert deliver(files_only, first) == (250, reply_inline), "the retry gets the same row id"
    code, reply_file = deliver(files_only, second)
    assert code == 250 and file_exists(files_only, sha256_hex(second))
    files_only.stop()
    second_service.clear()
    inline = Service(settings).start()
    second_service.append(inline)
    assert deliver(inline, second) == (250, reply_file)
    assert deliver(inline, first) == (250, reply_inline)
    assert len(rows(inline)) == 2
    assert sha256_hex(first) in inline_keys(inline)
    assert inline.app.blobs.get(sha256_hex(first)) == first and inline.app.blobs.get(sha256_hex(second)) == second
    wait_until(lambda: all_done(inline, 2), timeout=20)


FAIL_ON = {
    "sqlite": ["CREATE TRIGGER fail_{table} BEFORE INSERT ON {table} "
               "BEGIN SELECT RAISE(ABORT, 'simulated database failure'); END"],
    "postgresql": [
        "CREATE FUNCTION fail_{table}() RETURNS trigger AS $$ BEGIN "
        "RAISE EXCEPTION 'simulated database failure'; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER fail_{table} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION fail_{table}()",
    ],
}
UNDO_FAIL_ON = {
    "sqlite": ["DROP TRIGGER fail_{table}"],
    "postgresql": ["DROP TRIGGER fail_{table} ON {table}", "DROP FUNCTION fail_{table}()"],
}


def _run_sql(service: Service, statements: list[str], table: str) -> None:
    with service.app.engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement.format(table=table)))


@pytest.mark.parametrize("failing", ["blob_data", "inbound_messages"])
def test_a_failed_commit_answers_451_and_keeps_neither_blob_nor_row(service: Service, failing: str) -> None:
    dialect = service.app.engine.dialect.name
    raw = sized(3000, f"fails-on-{failing}")
    _run_sql(service, FAIL_ON[dialect], failing)
    try:
        code, reply = deliver(service, raw)
    finally:
        _run_sql(service, UNDO_FAIL_ON[dialect], failing)
    assert (code, reply[:5]) == (451, b"4.3.0")
    assert rows(service) == [] and inline_keys(service) == set(), "one transaction: nothing half-written"
    assert deliver(service, raw)[0] == 250, "the retry succeeds"
    assert inline_keys(service) == {sha256_hex(raw)}
    wait_until(lambda: all_done(service, 1), timeout=20)


def test_concurrent_small_and_large_mail_all_stored_in_their_tier(service: Service) -> None:
    sent: dict[str, bytes] = {}
    codes: list[int] = []

    def sender(n: int) -> None:
        for m in range(4):
            raw = sized(INLINE_MAX - 500 if (n + m) % 2 else INLINE_MAX * 3, f"mix-{n}-{m}")
            sent[sha256_hex(raw)] = raw
            codes.append(deliver(service, raw)[0])

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert codes == [250] * 32
    assert {sha for _, sha, _ in rows(service)} == set(sent)
    small = {key for key, raw in sent.items() if len(raw) <= INLINE_MAX}
    assert inline_keys(service) == small and len(small) == 16
    assert all(file_exists(service, key) for key in set(sent) - small)
    assert all(service.app.blobs.get(key) == raw for key, raw in sent.items())
    with service.app.session() as session:
        assert session.scalar(select(func.sum(BlobData.size))) == sum(len(sent[k]) for k in small)


def test_opening_the_file_store_sweeps_old_temp_files_only(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    shard = root / "ab" / "cd"
    shard.mkdir(parents=True)
    key = "abcd" + "0" * 60
    (shard / key).write_bytes(b"a stored blob")
    killed, in_flight = shard / f"{key}.tmp-123-456", shard / f"{key}.tmp-789-1"
    killed.write_bytes(b"half a message")
    in_flight.write_bytes(b"being written right now")
    old = time.time() - 120
    os.utime(killed, (old, old))
    (root / "ef").write_bytes(b"not a shard folder")
    store = FileBlobStore(root)
    store.sweeper.join(10)
    assert not killed.exists()
    assert in_flight.exists(), "younger than a minute: maybe another process's write in flight"
    assert store.get(key) == b"a stored blob"
    assert store.sweep_temp(older_than=0) == 1 and not in_flight.exists()
