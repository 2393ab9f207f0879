"""Is the broker there? One round trip to answer it, and a watcher that pauses workers while it is not.

dramatiq's consumers, left alone while Redis or RabbitMQ is down, log a
CRITICAL connection error every few seconds for as long as it lasts. A
``postroom worker`` instead says once that the broker is unreachable,
stops its consumers, tries again after a growing delay (logging each try),
and says when it is back before consuming again. Nothing is lost meanwhile:
the database is the record and the sweep re-enqueues what was not done.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from postroom.settings import redact_url

log = logging.getLogger(__name__)

BROKER_TIMEOUT = 2.0
FIRST_RETRY = 1.0
MAX_RETRY = 60.0
CHECK_EVERY = 5.0


def broker_reachable(url: str) -> str:
    """'in-process' for the stub broker, otherwise a real round trip to Redis or RabbitMQ ('ok', or raises)."""
    if not url:
        return "in-process"
    if url.startswith(("amqp://", "amqps://")):
        import pika

        params = pika.URLParameters(url)
        params.socket_timeout = params.blocked_connection_timeout = BROKER_TIMEOUT
        pika.BlockingConnection(params).close()
        return "ok"
    import redis

    client = redis.Redis.from_url(url, socket_timeout=BROKER_TIMEOUT, socket_connect_timeout=BROKER_TIMEOUT)
    try:
        client.ping()
    finally:
        client.close()
    return "ok"


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip().rstrip(":").splitlines()[0][:200]


class BrokerWatch:
    """Calls ``on_down`` when the broker stops answering and ``on_up`` when it answers again.

    ``wait_until_up`` blocks (logging each try) until the first answer, so a
    worker started before its broker reports "running" only once it is.
    """

    def __init__(self, url: str, on_down: Callable[[], None], on_up: Callable[[], None],
                 probe: Callable[[str], str] = broker_reachable) -> None:
        self.url = url
        self.where = redact_url(url)
        self.on_down, self.on_up, self.probe = on_down, on_up, probe
        self.stopping = threading.Event()
        self._nudged = threading.Event()
        self._thread: threading.Thread | None = None

    def nudge(self) -> None:
        """Check now (a consumer just hit a connection error)."""
        self._nudged.set()

    def quiet_consumers(self) -> None:
        """Drop dramatiq's repeated consumer connection errors from the log: this watch reports the outage."""
        for handler in logging.getLogger().handlers:
            handler.addFilter(_ConsumerConnectionErrors(self))

    def _answers(self) -> str | None:
        """None when the broker answered, else why not."""
        try:
            self.probe(self.url)
        except Exception as exc:
            return _why(exc)
        return None

    def wait_until_up(self) -> bool:
        """Block until the broker answers (True) or ``stop`` is called (False)."""
        delay, since = FIRST_RETRY, time.monotonic()
        while (why := self._answers()) is not None:
            log.warning("broker %s unreachable (%s); retrying in %.0f s", self.where, why, delay)
            if self.stopping.wait(delay):
                return False
            delay = min(MAX_RETRY, delay * 2)
        if time.monotonic() - since > 0.5:
            log.warning("broker %s reachable again after %.0f s", self.where, time.monotonic() - since)
        return True

    def start(self) -> BrokerWatch:
        self._thread = threading.Thread(target=self._run, name="postroom-broker-watch", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self.stopping.is_set():
            self._nudged.wait(CHECK_EVERY)
            self._nudged.clear()
            if self.stopping.is_set() or self._answers() is None:
                continue
            self.on_down()
            if not self.wait_until_up():
                return
            self.on_up()

    def stop(self) -> None:
        self.stopping.set()
        self._nudged.set()
        if self._thread is not None:
            self._thread.join(timeout=BROKER_TIMEOUT * 3)


class _ConsumerConnectionErrors(logging.Filter):
    """Swallows dramatiq's "connection error" records and nudges the watch to check the broker at once."""

    def __init__(self, watch: BrokerWatch) -> None:
        super().__init__()
        self.watch = watch

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("dramatiq") and "connection error" in record.getMessage().lower():
            self.watch.nudge()
            return False
        return True
