"""The one line each known failure becomes, from the real exception classes of the libraries that raise them.

tests/cli/test_errors.py provokes the common ones through the real command; this covers every kind of line,
with and without settings, so a secret in a URL never reaches the line.
"""

from __future__ import annotations

import errno
import ssl
from pathlib import Path

import pytest
import redis.exceptions
from alembic.util.exc import CommandError
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError
from dramatiq.errors import BrokerConnectionError
from pika.exceptions import AMQPConnectionError
from sqlalchemy.exc import OperationalError

from postroom.cli.failures import DEBUG_HINT, describe
from postroom.errors import PostroomError
from postroom.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", blob_url="s3://mail/raw", broker_url="redis://u:secret@mq:6379/0",
                    database_url="postgresql+psycopg://app:secret@db/postroom")


def test_postroom_errors_and_migrations(settings: Settings) -> None:
    assert describe(PostroomError("no tenant 'x';\n  create it"), settings) == "no tenant 'x'; create it"
    assert describe(CommandError("Can't locate revision identified by '9999'")) == (
        "the database is at migration 9999, which this postroom does not know (migrated by a newer version?): "
        "upgrade postroom")
    assert describe(CommandError("Multiple heads are present")) == "migrations failed: Multiple heads are present"


def test_database_errors_name_the_url_without_its_password(settings: Settings) -> None:
    refused = OperationalError("SELECT 1", {}, Exception("connection failed: Connection refused\nIs it running?"))
    assert describe(refused, settings) == (
        "cannot connect to the database postgresql+psycopg://app:***@db/postroom: Connection refused; "
        "is it running, and is POSTROOM_DATABASE_URL right?")
    assert describe(OperationalError("SELECT 1", {}, Exception("disk I/O error"))) == \
        "database error ((POSTROOM_DATABASE_URL)): disk I/O error"


def test_blob_store_lines(settings: Settings) -> None:
    unreachable = EndpointConnectionError(endpoint_url="http://s3.local/mail")
    assert describe(unreachable, settings) == (
        'cannot reach the blob store s3://mail/raw: Could not connect to the endpoint URL: "http://s3.local/mail"; '
        "is the S3 server running? (POSTROOM_BLOB_URL, AWS_ENDPOINT_URL_S3)")
    assert describe(ReadTimeoutError(endpoint_url="http://s3.local")).startswith("cannot reach the blob store S3: ")
    assert describe(NoCredentialsError(), settings) == \
        "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or give the host a role)"
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "PutObject")
    assert describe(denied, settings) == (
        "the blob store s3://mail/raw refused: An error occurred (AccessDenied) when calling the PutObject "
        "operation: Access Denied; check the bucket and the credentials' rights")
    assert describe(denied).startswith("the blob store S3 refused: ")


def test_broker_lines_never_show_its_password(settings: Settings) -> None:
    assert describe(redis.exceptions.ConnectionError("Connection refused"), settings) == (
        "cannot reach the broker redis://u:***@mq:6379/0: Connection refused; is it running? (POSTROOM_BROKER_URL)")
    assert describe(redis.exceptions.TimeoutError("timed out"), settings.replace(broker_url="")) == \
        "cannot reach the broker the broker: timed out; is it running? (POSTROOM_BROKER_URL)"
    assert describe(AMQPConnectionError("refused")).startswith("cannot reach the broker the broker: ")
    assert describe(redis.exceptions.TimeoutError()) == \
        "cannot reach the broker the broker: TimeoutError; is it running? (POSTROOM_BROKER_URL)"
    assert describe(BrokerConnectionError("lost the connection")).startswith("cannot reach the broker the broker: ")


def test_tls_and_os_errors(settings: Settings, tmp_path: Path) -> None:
    tls = describe(ssl.SSLError(9, "[SSL] PEM lib"))
    assert tls == "TLS: [SSL] PEM lib; check POSTROOM_TLS_CERT and POSTROOM_TLS_KEY"
    in_use = OSError(errno.EADDRINUSE, "Address already in use")
    assert describe(in_use) == "cannot listen on the SMTP or HTTP address: address already in use (another postroom " \
        "serve?)"
    inside = OSError(errno.EROFS, "Read-only file system", str(settings.data_dir / "blobs"))
    assert describe(inside, settings) == (f"cannot use the data directory {settings.data_dir}: "
                                          f"{settings.data_dir / 'blobs'} is on a read-only file system; "
                                          "set POSTROOM_DATA_DIR to a directory postroom may write")
    odd = OSError(errno.ENOSPC, "No space left on device", str(settings.data_dir))
    assert describe(odd, settings).startswith(f"cannot use the data directory {settings.data_dir}: "
                                              f"{settings.data_dir}: No space left on device; ")
    elsewhere = OSError(errno.EACCES, "Permission denied", "/etc/postroom.pem")
    assert describe(elsewhere, settings) == describe(elsewhere) == "/etc/postroom.pem: Permission denied"
    assert describe(OSError(errno.EPIPE, "Broken pipe")) == "Broken pipe"
    assert describe(OSError("no errno")) == "no errno"


def test_the_first_known_cause_wins_and_the_rest_is_unexpected(settings: Settings) -> None:
    try:
        try:
            raise redis.exceptions.ConnectionError("Connection refused")
        except redis.exceptions.ConnectionError as exc:
            raise RuntimeError("enqueue failed") from exc
    except RuntimeError as wrapped:
        assert describe(wrapped, settings).startswith("cannot reach the broker redis://u:***@mq:6379/0: ")
    assert describe(KeyError("x")) == f"unexpected KeyError: 'x' ({DEBUG_HINT})"
