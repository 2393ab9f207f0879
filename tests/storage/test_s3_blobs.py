"""The S3 blob store (POSTROOM_BLOB_URL=s3://…) under the real service, against moto's S3 server.

Everything goes to S3 here (inline_blob_max=0), so the 250 after DATA means
the raw bytes are an object in the bucket. While the S3 server is down the
gateway must answer 451 (the sender retries) and answer 250 again once it is
back; a large attachment goes through intake, parsing and storage with its
bytes retrievable from S3.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from email.message import EmailMessage

import boto3
import pytest
from moto.server import ThreadedMotoServer
from sqlalchemy import select

from postroom.service import Service
from postroom.settings import Settings
from postroom.storage import inbound
from postroom.storage.blobs import sha256_hex
from postroom.storage.tables import Message
from postroom.testing import free_port, make_eml, wait_until

BUCKET = "postroom-s3-test"
ATTACHMENT_SIZE = 8 * 1024 * 1024


class S3Server:
    """moto's S3 on a fixed 127.0.0.1 port that can be stopped and started again; its objects live in this process."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: ThreadedMotoServer | None = None

    def start(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    server = S3Server()
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": server.url,
                        "AWS_MAX_ATTEMPTS": "2"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    server.start()
    boto3.client("s3", endpoint_url=server.url).create_bucket(Bucket=BUCKET)
    yield server
    server.stop()


@pytest.fixture
def s3_service(settings: Settings, tenant_ids: dict[str, int], s3: S3Server) -> Iterator[Service]:
    service = Service(settings.replace(blob_url=f"s3://{BUCKET}/raw", inline_blob_max=0)).start()
    yield service
    service.stop()


def send(service: Service, data: bytes) -> tuple[int, bytes]:
    """The answer to DATA (smtplib raises on a refusal: the code is what the sender's MTA acts on)."""
    with smtplib.SMTP("127.0.0.1", service.smtp_port, timeout=60) as client:
        try:
            client.sendmail("jean@example.com", ["inbox@acme.mail.test"], data)
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code, exc.smtp_error
    return 250, b""


def objects(s3: S3Server) -> set[str]:
    listing = boto3.client("s3", endpoint_url=s3.url).list_objects_v2(Bucket=BUCKET, Prefix="raw/")
    return {item["Key"] for item in listing.get("Contents", [])}


def test_451_while_s3_is_down_then_250_again(s3_service: Service, s3: S3Server) -> None:
    first = make_eml(subject="while S3 is down")
    s3.stop()
    code, reply = send(s3_service, first)
    assert code == 451, reply
    s3.start()
    assert f"raw/{sha256_hex(first)}" not in objects(s3)
    assert send(s3_service, first) == (250, b"")  # the sender's retry
    assert f"raw/{sha256_hex(first)}" in objects(s3)
    with s3_service.app.session() as session:
        rows = inbound.list_inbound(session)
    assert [row.sha256 for row in rows] == [sha256_hex(first)]


def test_large_attachment_end_to_end(s3_service: Service, s3: S3Server) -> None:
    payload = bytes(range(256)) * (ATTACHMENT_SIZE // 256)
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "jean@example.com", "inbox@acme.mail.test", "Floor plans"
    message.set_content("The plans are attached.")
    message.add_attachment(payload, maintype="application", subtype="pdf", filename="plans.pdf")
    raw = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
    assert send(s3_service, raw) == (250, b"")
    assert f"raw/{sha256_hex(raw)}" in objects(s3)

    def processed() -> list[dict] | None:
        with s3_service.app.session() as session:
            rows = inbound.list_inbound(session)
            if not rows or rows[0].status != "done":
                return None
            return session.execute(select(Message.attachments).where(Message.inbound_id == rows[0].id)).scalar_one()

    attachments = wait_until(processed, timeout=60)
    assert [(a["filename"], a["size"], a["sha256"]) for a in attachments] == \
        [("plans.pdf", ATTACHMENT_SIZE, sha256_hex(payload))]
    assert f"raw/{sha256_hex(payload)}" in objects(s3)
    assert s3_service.app.blobs.get(sha256_hex(payload)) == payload
