"""What went wrong, in one line an operator can act on.

``postroom.cli.main`` turns any exception that reaches it into one of these
lines (tracebacks only with ``--debug`` or POSTROOM_DEBUG=1). Library
exceptions are recognised by class name along their MRO, so neither redis,
pika nor botocore is imported just to tell their errors apart.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from postroom.errors import PostroomError
from postroom.settings import Settings, redact_url

DEBUG_HINT = "run with --debug for the traceback"

_DB_MISSING = re.compile(r'database "([^"]+)" does not exist')
_SCHEMA_BEHIND = re.compile(r"no such (table|column)|relation .* does not exist|column .* does not exist|UndefinedTable"
                            r"|UndefinedColumn")
_UNKNOWN_REVISION = re.compile(r"Can't locate revision identified by '([^']+)'")
_CONNECT = re.compile(r"connection failed|could not connect|connection refused|timeout expired|timed out"
                      r"|could not translate host name|server closed the connection|password authentication failed",
                      re.IGNORECASE)


def describe(exc: BaseException, settings: Settings | None = None) -> str:
    """One line for ``exc``: the first exception along its cause chain that postroom knows, else a generic line."""
    for link in _chain(exc):
        names = {f"{cls.__module__}.{cls.__qualname__}" for cls in type(link).__mro__}
        line = _known(link, names, settings)
        if line is not None:
            return _one_line(line)
    return _one_line(f"unexpected {type(exc).__name__}: {exc} ({DEBUG_HINT})")


def listen_failure(address: str, exc: OSError, setting: str = "POSTROOM_SMTP_LISTEN or POSTROOM_HTTP_LISTEN") -> str:
    """Why ``address`` cannot be listened on, and what usually causes it."""
    if exc.errno == errno.EADDRINUSE:
        return f"cannot listen on {address}: address already in use (another postroom serve?)"
    if exc.errno == errno.EACCES:
        return (f"cannot listen on {address}: permission denied (ports below 1024 need root or "
                f"CAP_NET_BIND_SERVICE, see deploy/systemd/postroom.service; or change {setting})")
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {address}: no such address on this machine (check {setting})"
    return f"cannot listen on {address}: {exc.strerror or exc} (check {setting})"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)  # SQLAlchemy's DBAPIError wraps the driver's error here
        current = current.__cause__ or current.__context__ or (orig if isinstance(orig, BaseException) else None)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _known(exc: BaseException, names: set[str], settings: Settings | None) -> str | None:
    if isinstance(exc, PostroomError):
        return str(exc)
    for classes, line in _LIBRARY_LINES:
        if names & classes:
            return line(exc, settings)
    if isinstance(exc, OSError):
        return _os_error(exc, settings)
    return None


def _migrations(exc: BaseException, settings: Settings | None) -> str:
    found = _UNKNOWN_REVISION.search(str(exc))
    if found:
        return (f"the database is at migration {found.group(1)}, which this postroom does not know "
                "(migrated by a newer version?): upgrade postroom")
    return f"migrations failed: {exc}"


def _blob_unreachable(exc: BaseException, settings: Settings | None) -> str:
    where = redact_url(settings.resolved_blob_url) if settings else "S3"
    return (f"cannot reach the blob store {where}: {exc}; is the S3 server running? "
            "(POSTROOM_BLOB_URL, AWS_ENDPOINT_URL_S3)")


def _no_s3_credentials(exc: BaseException, settings: Settings | None) -> str:
    return "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or give the host a role)"


def _blob_refused(exc: BaseException, settings: Settings | None) -> str:
    where = redact_url(settings.resolved_blob_url) if settings else "S3"
    return f"the blob store {where} refused: {exc}; check the bucket and the credentials' rights"


def _broker_unreachable(exc: BaseException, settings: Settings | None) -> str:
    where = redact_url(settings.broker_url) if settings and settings.broker_url else "the broker"
    return f"cannot reach the broker {where}: {str(exc) or type(exc).__name__}; is it running? (POSTROOM_BROKER_URL)"


def _tls(exc: BaseException, settings: Settings | None) -> str:
    return f"TLS: {exc}; check POSTROOM_TLS_CERT and POSTROOM_TLS_KEY"


def _database(exc: BaseException, settings: Settings | None) -> str:
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    url = redact_url(settings.resolved_database_url) if settings else "(POSTROOM_DATABASE_URL)"
    missing = _DB_MISSING.search(reason)
    if missing:
        return (f"database {missing.group(1)} does not exist ({url}): create it (createdb {missing.group(1)}) "
                "or point POSTROOM_DATABASE_URL at an existing one")
    if _SCHEMA_BEHIND.search(reason):
        return f"the database schema is not up to date ({reason}): run `postroom init` to apply the migrations"
    if "unable to open database file" in reason:
        return f"cannot open the database {url}: check that its folder exists and is writable"
    if _CONNECT.search(reason):
        reason = reason.removeprefix("connection failed: ")
        return f"cannot connect to the database {url}: {reason}; is it running, and is POSTROOM_DATABASE_URL right?"
    return f"database error ({url}): {reason}"


_S3_UNREACHABLE = frozenset({"botocore.exceptions.EndpointConnectionError", "botocore.exceptions.ConnectTimeoutError",
                             "botocore.exceptions.ReadTimeoutError", "botocore.exceptions.ConnectionClosedError"})
_BROKER_UNREACHABLE = frozenset({"redis.exceptions.ConnectionError", "redis.exceptions.TimeoutError",
                                 "pika.exceptions.AMQPConnectionError", "dramatiq.errors.BrokerConnectionError"})
#: Library errors by fully qualified class name (any along the MRO), first match wins; OSError comes after them
#: all, since ssl.SSLError is one.
_LIBRARY_LINES: tuple[tuple[frozenset[str], Callable[[BaseException, Settings | None], str]], ...] = (
    (frozenset({"alembic.util.exc.CommandError"}), _migrations),
    (frozenset({"sqlalchemy.exc.DBAPIError"}), _database),
    (_S3_UNREACHABLE, _blob_unreachable),
    (frozenset({"botocore.exceptions.NoCredentialsError"}), _no_s3_credentials),
    (frozenset({"botocore.exceptions.ClientError"}), _blob_refused),
    (_BROKER_UNREACHABLE, _broker_unreachable),
    (frozenset({"ssl.SSLError"}), _tls),
)


def _os_error(exc: OSError, settings: Settings | None) -> str:
    if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
        return listen_failure("the SMTP or HTTP address", exc)
    filename = exc.filename
    if filename is not None and settings is not None and _about(Path(str(filename)), settings.data_dir):
        why = {errno.EEXIST: f"{filename} is a file, not a directory",
               errno.ENOTDIR: f"a folder on the path {filename} is a file",
               errno.EACCES: f"permission denied on {filename}",
               errno.EROFS: f"{filename} is on a read-only file system",
               }.get(exc.errno or 0, f"{filename}: {exc.strerror}")
        return (f"cannot use the data directory {settings.data_dir}: {why}; "
                "set POSTROOM_DATA_DIR to a directory postroom may write")
    if filename is not None:
        return f"{filename}: {exc.strerror or exc}"
    return f"{exc.strerror or exc}"


def _about(path: Path, data_dir: Path) -> bool:
    """Whether ``path`` is the data directory, one of its parents or something inside it."""
    path, data_dir = path.resolve(), data_dir.resolve()
    return path == data_dir or path in data_dir.parents or data_dir in path.parents
