"""Content-addressed blob store for raw mail and attachments (disk or S3).

Keys are SHA-256 hex digests, so writing the same bytes twice is a no-op and
a key can never point at the wrong content.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from postroom.errors import ConfigError, NotFound


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_key(key: str) -> str:
    """Only 64 lower-case hex digits: a key can never name a path outside the store."""
    if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
        raise ValueError(f"not a sha256 blob key: {key!r}")
    return key


class BlobStore(Protocol):
    def put(self, data: bytes) -> str: ...

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...


class FileBlobStore:
    """Blobs under ``root/ab/cd/<sha256>``, written to a temp file, fsynced, then renamed."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, key: str) -> Path:
        key = _check_key(key)
        return self.root / key[:2] / key[2:4] / key

    def put(self, data: bytes) -> str:
        key = sha256_hex(data)
        path = self.path_for(key)
        if path.exists():
            return key
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
        return key

    def get(self, key: str) -> bytes:
        try:
            return self.path_for(key).read_bytes()
        except FileNotFoundError as exc:
            raise NotFound(f"blob {key} is missing from {self.root}") from exc

    def exists(self, key: str) -> bool:
        return self.path_for(key).exists()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class S3BlobStore:
    """Blobs as objects ``<prefix>/<sha256>`` in one bucket; S3 writes are durable on 200."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None) -> None:
        import boto3

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = boto3.client("s3", endpoint_url=endpoint_url)

    def _key(self, key: str) -> str:
        key = _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, data: bytes) -> str:
        key = sha256_hex(data)
        if not self.exists(key):
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data,
                                   ChecksumAlgorithm="SHA256")
        return key

    def get(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey as exc:
            raise NotFound(f"blob {key} is missing from s3://{self.bucket}/{self.prefix}") from exc

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True


def open_blob_store(url: str) -> BlobStore:
    """``file:///path`` or ``s3://bucket/prefix`` (endpoint from AWS_ENDPOINT_URL_S3 if set)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return FileBlobStore(parsed.path)
    if parsed.scheme == "s3":
        return S3BlobStore(parsed.netloc, parsed.path, os.environ.get("AWS_ENDPOINT_URL_S3"))
    raise ConfigError(f"POSTROOM_BLOB_URL {url!r}: use file:///path or s3://bucket/prefix")
