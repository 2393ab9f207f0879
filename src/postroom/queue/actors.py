"""The only place that touches dramatiq actors: thin wrappers that carry ids.

``Pipeline`` registers the actors on a broker (no import-time global broker),
sends ids, runs workers, and sweeps the database for rows that need a push.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import timedelta

import dramatiq
from dramatiq import Broker, Worker

from postroom import flow
from postroom.app import App
from postroom.outbound import delivery, staff_mail
from postroom.storage import conversation_actions, inbound, routing
from postroom.storage import outbound as outbound_store

log = logging.getLogger(__name__)

INBOUND_QUEUE = "inbound"
OUTBOUND_QUEUE = "outbound"
AUTOCLOSE_EVERY = 3600.0
SWEEP_EVERY = 15.0
SWEEP_IDLE = timedelta(seconds=30)


class Pipeline:
    """``inbound_sink``, when given, takes inbound ids instead of this broker (worker processes, see
    ``queue.processes``); outbound jobs, the sweeper and the scheduled jobs stay here. ``watch`` is told which
    row each pipeline thread runs (a worker process publishes it to its supervisor)."""

    def __init__(self, app: App, broker: Broker, inbound_sink: Callable[[Iterable[int]], None] | None = None,
                 watch: flow.Watch | None = None) -> None:
        self.app = app
        self.broker = broker
        self.inbound_sink = inbound_sink
        self.watch = watch
        self.process_inbound = dramatiq.actor(
            self._process_inbound, broker=broker, actor_name="process_inbound", queue_name=INBOUND_QUEUE,
            max_retries=app.settings.max_attempts, min_backoff=500, max_backoff=300_000,
            throws=(),
        )
        self.deliver = dramatiq.actor(
            self._deliver, broker=broker, actor_name="deliver", queue_name=OUTBOUND_QUEUE,
            max_retries=3, min_backoff=1000, max_backoff=60_000,
        )
        self.transport_for = delivery.default_transport(app.settings)
        self._workers: list[Worker] = []
        self._specs: list[tuple[int, set[str] | None]] = []
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._sweeper: threading.Thread | None = None

    def _process_inbound(self, inbound_id: int) -> None:
        flow.process_inbound(self.app, inbound_id, dispatch_outbound=self.dispatch_outbound, watch=self.watch)

    def _deliver(self, outbound_id: int) -> None:
        """One attempt; a deferral is scheduled as a delayed message (the sweeper is the safety net)."""
        outcome = delivery.deliver(self.app, outbound_id, transport_for=self.transport_for)
        if outcome.retry_in is not None:
            self.dispatch_outbound([outbound_id], delay=outcome.retry_in)

    def dispatch_outbound(self, ids: Iterable[int], delay: float = 0.0) -> None:
        """Hand outbound ids to the ``outbound`` queue; rows stay queued in the database if this fails."""
        for outbound_id in ids:
            try:
                self.deliver.send_with_options(args=(outbound_id,), delay=int(delay * 1000) or None)
            except Exception as exc:
                log.warning("could not enqueue outbound %s (will be swept up later): %s", outbound_id, exc)

    def dispatch(self, ids: Iterable[int]) -> None:
        """Hand ids to the broker; a broker outage only delays work (the sweeper re-sends)."""
        if self.inbound_sink is not None:
            self.inbound_sink(ids)
            return
        for inbound_id in ids:
            try:
                self.process_inbound.send(inbound_id)
            except Exception as exc:
                log.warning("could not enqueue inbound %s (will be swept up later): %s", inbound_id, exc)

    def recover(self, idle: timedelta = timedelta(0)) -> int:
        """Re-enqueue every row that is not finished; safe because claiming is atomic."""
        with self.app.session() as session:
            ids = inbound.due_for_recovery(session, idle=idle)
            outbound_ids = outbound_store.due_for_recovery(session, idle=idle)
        self.dispatch(ids)
        self.dispatch_outbound(outbound_ids)
        return len(ids) + len(outbound_ids)

    def start_worker(self, threads: int, queues: set[str] | None = None) -> None:
        """Run ``threads`` worker threads on ``queues`` (default every queue of this broker); may be called again
        for other queues, e.g. a CPU-bound pipeline on few threads beside I/O-bound delivery on more."""
        level = self.broker.logger.level
        if self._workers:  # dramatiq warns about a second worker's middleware; each consumes only its own queues
            self.broker.logger.setLevel(logging.ERROR)
        try:
            worker = Worker(self.broker, queues=queues, worker_threads=threads, worker_timeout=100)
            worker.start()
        finally:
            self.broker.logger.setLevel(level)
        self._workers.append(worker)
        self._specs.append((threads, queues))

    def pause(self) -> None:
        """Stop consuming (the broker is gone: its consumers would only log connection errors); the sweeper rests."""
        self._paused.set()
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.stop()

    def resume(self) -> None:
        """Consume again with the workers ``pause`` stopped, and enqueue what is due at once."""
        specs, self._specs = self._specs, []
        for threads, queues in specs:
            self.start_worker(threads, queues)
        self._paused.clear()
        self.recover()

    def autoclose(self) -> int:
        """The scheduled auto-close job: close conversations idle past their tenant's setting."""
        with self.app.session() as session:
            closed = conversation_actions.autoclose(session)
        return sum(len(ids) for ids in closed.values())

    def mail_staff(self) -> list[int]:
        """The staff mail job: queue the notification mail users are due (immediate or digest) and send it."""
        return staff_mail.run(self.app, dispatch=self.dispatch_outbound)

    def purge_discarded(self) -> int:
        """The retention job: delete discarded inbound rows older than ``discard_retention_days``."""
        with self.app.session() as session:
            purged = routing.purge_discarded(
                session, older_than=timedelta(days=self.app.settings.discard_retention_days))
        if purged:
            log.info("purged %s discarded inbound messages past their retention", len(purged))
        return len(purged)

    def start_sweeper(self, every: float = SWEEP_EVERY) -> None:
        def loop() -> None:
            next_autoclose = time.monotonic()
            while not self._stop.wait(every):
                if self._paused.is_set():
                    continue
                try:
                    self.recover(SWEEP_IDLE)
                except Exception as exc:
                    log.warning("recovery sweep failed: %s", exc)
                try:
                    self.mail_staff()
                except Exception as exc:
                    log.warning("staff mail job failed: %s", exc)
                if time.monotonic() >= next_autoclose:
                    next_autoclose = time.monotonic() + AUTOCLOSE_EVERY
                    try:
                        self.autoclose()
                    except Exception as exc:
                        log.warning("auto-close job failed: %s", exc)
                    try:
                        self.purge_discarded()
                    except Exception as exc:
                        log.warning("discard purge job failed: %s", exc)

        self._sweeper = threading.Thread(target=loop, name="postroom-sweeper", daemon=True)
        self._sweeper.start()

    def join(self, timeout: float = 30.0) -> None:
        """Wait until the broker's queues are empty (tests, ingest)."""
        self.broker.join(INBOUND_QUEUE, timeout=int(timeout * 1000))
        for worker in self._workers:
            worker.join()

    def stop(self) -> None:
        """Stop the sweeper and the workers first: nothing may send on the broker while it closes."""
        self._stop.set()
        if self._sweeper is not None:
            self._sweeper.join(30)
        for worker in self._workers:
            worker.stop()
        self._workers.clear()
        self.broker.close()
