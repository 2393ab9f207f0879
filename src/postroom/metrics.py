"""Prometheus metrics: event counters kept in-process, queue gauges read from the database.

Counters and histograms count what this process did (SMTP sessions, accepted
mail, pipeline runs); they live on one process-wide registry as Prometheus
clients expect. Queue depth, ages and outbound states are the database's
truth, so they are computed at scrape time and are right whichever process
did the work.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from dramatiq import Middleware
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

SMTP_SESSIONS = Counter("postroom_smtp_sessions", "SMTP connections opened", registry=REGISTRY)
RECEIVED = Counter("postroom_messages_received", "Messages whose DATA was received", registry=REGISTRY)
ACCEPTED = Counter("postroom_messages_accepted", "Messages stored and acknowledged with 250", registry=REGISTRY)
INGRESS = Counter("postroom_ingress_messages", "Messages stored from an ingress other than SMTP, by source (imap, "
                  "ses, webhook:mailgun, ...)", ["source"], registry=REGISTRY)
REFUSED = Counter("postroom_messages_refused", "Recipients or messages refused, by reason", ["reason"],
                  registry=REGISTRY)
INTAKE_SECONDS = Histogram("postroom_intake_seconds", "Time to store a message durably before answering DATA",
                           registry=REGISTRY, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
STAGE_PROCESSED = Counter("postroom_stage_processed", "Pipeline jobs finished, per stage", ["stage"],
                          registry=REGISTRY)
STAGE_FAILED = Counter("postroom_stage_failed", "Pipeline jobs that raised (and will be retried or failed), per stage",
                       ["stage"], registry=REGISTRY)
STAGE_SECONDS = Histogram("postroom_stage_seconds", "Time spent in one pipeline job, per stage", ["stage"],
                          registry=REGISTRY, buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
MESSAGES_FAILED = Counter("postroom_messages_failed", "Inbound messages that ended failed, by reason class "
                          "(budget_cpu, budget_memory, attempts_exhausted, error)", ["reason"], registry=REGISTRY)
RULE_ACTIONS_SKIPPED = Counter("postroom_rule_actions_skipped", "Rule actions skipped at run time, by kind: they "
                               "name a user, team or template the tenant does not have", ["kind"], registry=REGISTRY)
HTTP_SECONDS = Histogram("postroom_http_request_seconds", "HTTP API request durations", ["method", "route", "code"],
                         registry=REGISTRY)


def count_failed(reason: str) -> None:
    """Count one message failed for good, on this process's registry."""
    MESSAGES_FAILED.labels(reason).inc()


def count_rule_action_skipped(kind: str) -> None:
    RULE_ACTIONS_SKIPPED.labels(kind).inc()


# Counters whose events can happen in a worker process and must be seen by the serving process's /metrics.
RELAYED: dict[str, Callable[[str], None]] = {"messages_failed": count_failed,
                                             "rule_actions_skipped": count_rule_action_skipped}


def count_here(name: str, label: str) -> None:
    """Count one event of a relayed counter on this process's registry."""
    RELAYED[name](label)


_sink: list[Callable[[str, str], None]] = [count_here]


def message_failed(reason: str) -> None:
    """Count a message failed for good where ``/metrics`` sees it (see ``relay_counts``)."""
    _sink[0]("messages_failed", reason)


def rule_action_skipped(kind: str) -> None:
    """Count a rule action skipped at run time (it names something the tenant lacks) where ``/metrics`` sees it."""
    _sink[0]("rule_actions_skipped", kind)


def relay_counts(sink: Callable[[str, str], None]) -> None:
    """Send this process's relayed counts elsewhere: a worker process relays them to the serving process."""
    _sink[0] = sink


def record_stage(stage: str, seconds: float | None, failed: bool) -> None:
    """Count one finished pipeline job (and its duration when known) on this process's registry."""
    if seconds is not None:
        STAGE_SECONDS.labels(stage).observe(seconds)
    (STAGE_FAILED if failed else STAGE_PROCESSED).labels(stage).inc()


class StageMetrics(Middleware):
    """Dramatiq middleware: one processed/failed count and one duration per job, labelled by queue (stage).

    ``observe`` gets ``(stage, seconds, failed)``: by default the counters here; worker processes that
    ``serve`` starts send it to the serving process instead, so its ``/metrics`` sees every job.
    """

    def __init__(self, observe: Callable[[str, float | None, bool], None] = record_stage) -> None:
        self.observe = observe
        self._started: dict[str, float] = {}

    def before_process_message(self, broker: Any, message: Any) -> None:
        self._started[message.message_id] = time.perf_counter()

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        started = self._started.pop(message.message_id, None)
        self.observe(message.queue_name.removesuffix(".DQ"),
                     None if started is None else time.perf_counter() - started, exception is not None)

    def after_skip_message(self, broker: Any, message: Any) -> None:
        self._started.pop(message.message_id, None)


QueueShape = Callable[[], list[tuple[str, str, int, datetime | None]]]


class DatabaseCollector(Collector):
    """Scrape-time gauges: rows per stage/status, age of the oldest, and outbound states if present."""

    def __init__(self, queue_shape: QueueShape, outbound_shape: Callable[[], list[tuple[str, int]]] | None = None):
        self.queue_shape = queue_shape
        self.outbound_shape = outbound_shape

    def collect(self) -> Iterator[Metric]:
        now = datetime.now(UTC)
        depth = GaugeMetricFamily("postroom_queue_depth", "Inbound messages per stage and status",
                                  labels=["stage", "status"])
        oldest = GaugeMetricFamily("postroom_queue_oldest_age_seconds",
                                   "Age of the oldest inbound message per stage and status", labels=["stage", "status"])
        for stage, status, count, first in self.queue_shape():
            depth.add_metric([stage, status], count)
            if first is not None:
                oldest.add_metric([stage, status], max(0.0, (now - first).total_seconds()))
        yield depth
        yield oldest
        if self.outbound_shape is not None:
            outbound = GaugeMetricFamily("postroom_outbound_messages", "Outbound messages per status (sent, "
                                         "deferred, bounced, ...)", labels=["status"])
            for status, count in self.outbound_shape():
                outbound.add_metric([status], count)
            yield outbound
