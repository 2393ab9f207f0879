"""Logging setup: plain text or one JSON object per line, each carrying the message's ids and tenant.

Ids and tenant travel in a context variable bound around each pipeline job
(``bound(...)``, or the ``LogContext`` broker middleware), so existing
``log.info(...)`` calls gain them without changing; ``extra={"tenant": ...}``
works too.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

from dramatiq import Middleware

CONTEXT_KEYS = ("inbound_id", "outbound_id", "conversation_id", "tenant")
EXTRA_KEYS = ("outcome", "duration_ms")  # fields of the per-message line, as JSON fields too
QUEUE_ID_KEYS = {"inbound": "inbound_id", "outbound": "outbound_id"}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries whose INFO lines are chatter at every start (alembic's context lines, uvicorn's process line):
# their warnings and errors still show.
NOISY = ("mail.log", "aiosmtpd", "dramatiq", "pika", "uvicorn.access", "uvicorn.error", "alembic")

_context: ContextVar[dict[str, Any]] = ContextVar("postroom_log_context", default={})  # noqa: B039
_format = {"current": "text"}


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Attach fields (inbound_id=…, tenant=…) to every log line written inside the block."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def note(**fields: Any) -> None:
    """Add fields to the innermost ``bound`` block (a job learns its conversation half-way); no-op outside one."""
    current = _context.get()
    if current:
        current.update(fields)


def processed(logger: logging.Logger, inbound_id: int, outcome: str, seconds: float) -> None:
    """The one line per processed message: id, outcome and duration (tenant and conversation from the context)."""
    conversation = _context.get().get("conversation_id")
    logger.info("inbound %s %s in %.1f ms%s", inbound_id, outcome, seconds * 1000,
                f" (conversation {conversation})" if conversation is not None else "",
                extra={"outcome": outcome, "duration_ms": round(seconds * 1000, 1)})


class Lazy:
    """A context value looked up only when a log line is written (most jobs write none), then kept."""

    _unset = object()

    def __init__(self, lookup: Callable[[], Any]) -> None:
        self._lookup = lookup
        self._value: Any = self._unset

    def get(self) -> Any:
        if self._value is self._unset:
            try:
                self._value = self._lookup()
            except Exception:
                self._value = None
        return self._value


def context_of(record: logging.LogRecord) -> dict[str, Any]:
    fields = {k: v.get() if isinstance(v, Lazy) else v for k, v in _context.get().items()
              if not isinstance(v, Lazy) or v.get() is not None}
    fields.update({key: getattr(record, key) for key in CONTEXT_KEYS if getattr(record, key, None) is not None})
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, ids, tenant, exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
            **context_of(record),
            **{key: getattr(record, key) for key in EXTRA_KEYS if hasattr(record, key)},
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The usual text line, with ``[inbound_id=… tenant=…]`` appended when known."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = context_of(record)
        return f"{text} [{' '.join(f'{k}={v}' for k, v in fields.items())}]" if fields else text


def configure(log_format: str = "text", *, verbose: bool = False) -> None:
    """Install one stderr handler on the root logger in the chosen format ('text' or 'json')."""
    if log_format not in ("text", "json"):
        raise ValueError(f"POSTROOM_LOG_FORMAT must be 'text' or 'json', not {log_format!r}")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter(TEXT_FORMAT))
    _format["current"] = log_format
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)


def announce(message: str) -> None:
    """A start-up line (where postroom listens, what it uses): bare text on stderr as people read it, or, with
    POSTROOM_LOG_FORMAT=json, a JSON line like every other, so a log collector never sees a line it cannot parse."""
    if _format["current"] == "json":
        logging.getLogger("postroom.start").info(message)
    else:
        print(message, file=sys.stderr, flush=True)


class LogContext(Middleware):
    """Bind the job's id (and its tenant, via ``tenant_of``) for the log lines of one broker job.

    The tenant is looked up lazily, on the first line the job logs: a lookup
    per job was a database transaction per message for lines rarely written
    (the pipeline binds the tenant itself from its claim).
    """

    def __init__(self, tenant_of: Callable[[str, int], str | None] | None = None) -> None:
        self.tenant_of = tenant_of
        self._tokens: dict[str, Token[dict[str, Any]]] = {}

    def before_process_message(self, broker: Any, message: Any) -> None:
        queue = message.queue_name.removesuffix(".DQ")
        key = QUEUE_ID_KEYS.get(queue)
        if key is None or not message.args:
            return
        fields: dict[str, Any] = {key: message.args[0]}
        if self.tenant_of is not None:
            tenant_of, job_id = self.tenant_of, message.args[0]
            fields["tenant"] = Lazy(lambda: tenant_of(queue, job_id))
        self._tokens[message.message_id] = _context.set({**_context.get(), **fields})

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        token = self._tokens.pop(message.message_id, None)
        if token is not None:
            _context.reset(token)

    after_skip_message = after_process_message
