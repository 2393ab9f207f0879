"""Content-addressed blob store for raw mail and attachments (disk or S3).

Keys are SHA-256 hex digests, so writing the same bytes twice is a no-op and
a key can never point at the wrong content.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from postroom.errors import ConfigError, NotFound

log = logging.getLogger(__name__)
TEMP_MAX_AGE = 60.0


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_key(key: str) -> str:
    """Only 64 lower-case hex digits: a key can never name a path outside the store."""
    if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
        raise ValueError(f"not a sha256 blob key: {key!r}")
    return key


class BlobStore(Protocol):
    def put(self, data: bytes) -> str: ...

    def put_many(self, items: Sequence[bytes]) -> list[str]: ...

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...


class FileBlobStore:
    """Blobs under ``root/ab/cd/<sha256>``, written to a temp file, fsynced, then renamed.

    Opening the store starts a background sweep (``sweeper``) of temp files
    that writes killed before their rename left behind; in the background
    because a large store has up to 65,536 shard folders to list, and a CLI
    command must not wait for that.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._root = str(self.root)
        self._known_dirs: set[str] = set()
        self.sweeper = threading.Thread(target=self._sweep_quietly, name="postroom-blob-sweep", daemon=True)
        self.sweeper.start()

    def sweep_temp(self, older_than: float = TEMP_MAX_AGE) -> int:
        """Delete ``*.tmp-*`` files older than ``older_than`` seconds; return how many.

        A temp file is only ever named by its writer, so one untouched for a
        minute belongs to a write that was killed (its message never got a
        250): garbage. Younger ones may be another process's write in flight.
        """
        cutoff = time.time() - older_than
        removed = 0
        for top in _subdirs(self._root):
            for leaf in _subdirs(top):
                with os.scandir(leaf) as entries:
                    for entry in entries:
                        if ".tmp-" not in entry.name or not entry.is_file(follow_symlinks=False):
                            continue
                        try:
                            if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                                os.unlink(entry.path)
                                removed += 1
                        except FileNotFoundError:
                            pass
        return removed

    def _sweep_quietly(self) -> None:
        try:
            removed = self.sweep_temp()
        except OSError as exc:
            log.warning("could not sweep blob temp files in %s: %s", self._root, exc)
            return
        if removed:
            log.info("removed %s blob temp files left by killed writes in %s", removed, self._root)

    def path_for(self, key: str) -> Path:
        key = _check_key(key)
        return self.root / key[:2] / key[2:4] / key

    def put(self, data: bytes) -> str:
        return self.put_many([data])[0]

    def put_many(self, items: Sequence[bytes]) -> list[str]:
        """Store a batch durably with a few syncs in all instead of two fsyncs per blob (group commit).

        Same order as ``put``, per batch: write every temp file, make the data
        durable, rename them into place, make the directory entries durable.
        A key therefore never names a file whose bytes could be lost, and the
        caller commits its rows only after this returns.
        """
        keys = [sha256_hex(data) for data in items]
        todo: dict[str, tuple[str, str]] = {}
        new_dirs: set[str] = set()
        try:
            for key, data in zip(keys, items, strict=True):
                if key in todo:
                    continue
                path = os.path.join(self._dir_for(key, new_dirs), key)
                if os.path.exists(path):
                    continue
                tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                todo[key] = (tmp, path)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                finally:
                    os.close(fd)
            if not todo:
                return keys
            dirs = {os.path.dirname(path) for _, path in todo.values()} | new_dirs
            self._sync([tmp for tmp, _ in todo.values()])
            for tmp, path in todo.values():
                os.replace(tmp, path)
            todo.clear()
            self._sync(sorted(dirs | {os.path.dirname(d) for d in new_dirs}))
            self._known_dirs.update(dirs)
        finally:
            for tmp, _ in todo.values():
                Path(tmp).unlink(missing_ok=True)
        return keys

    def _dir_for(self, key: str, created: set[str]) -> str:
        """``root/ab/cd``, created if needed; new directories are noted so their entries get synced too.

        A directory counts as known (no more mkdir) only once a batch has synced it.
        """
        key = _check_key(key)
        top = os.path.join(self._root, key[:2])
        leaf = os.path.join(top, key[2:4])
        if leaf not in self._known_dirs:
            for path in (top, leaf):
                try:
                    os.mkdir(path)
                    created.add(path)
                except FileExistsError:
                    pass
        return leaf

    def _sync(self, paths: Sequence[str]) -> None:
        """fsync each path, or one syncfs(2) of the store's filesystem when that is cheaper (many paths)."""
        if len(paths) >= SYNCFS_FROM and _syncfs(self._root):
            return
        for path in paths:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def get(self, key: str) -> bytes:
        try:
            return self.path_for(key).read_bytes()
        except FileNotFoundError as exc:
            raise NotFound(f"blob {key} is missing from {self.root}") from exc

    def exists(self, key: str) -> bool:
        return self.path_for(key).exists()


def _subdirs(path: str) -> list[str]:
    """The two-hex-digit shard folders in ``path`` (anything else is not the store's)."""
    with os.scandir(path) as entries:
        return [e.path for e in entries if len(e.name) == 2 and e.is_dir(follow_symlinks=False)]


SYNCFS_FROM = 4
_libc = ctypes.CDLL(None, use_errno=True) if os.name == "posix" else None


def _syncfs(path: str) -> bool:
    """syncfs(2) on the filesystem holding ``path``: one flush for a whole batch; False where unavailable.

    Linux reports writeback errors from syncfs since 5.8 (like fsync).
    """
    syncfs = getattr(_libc, "syncfs", None)
    if syncfs is None:
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs({path}): {os.strerror(err)}")
    finally:
        os.close(fd)
    return True


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

    def put_many(self, items: Sequence[bytes]) -> list[str]:
        return [self.put(data) for data in items]

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
