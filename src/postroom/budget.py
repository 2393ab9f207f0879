"""The per-message budget: how much CPU time and memory one inbound message may take, and the reasons given.

Two enforcers share these texts (docs/pipeline.md): ``Budget`` is checked by
the flow between stages, so an over-budget message fails cleanly in its own
worker; the supervisor of the worker processes (``queue.processes``) kills a
process whose current message overruns inside a stage (a parse that never
returns to the flow) or whose memory outgrows the budget. Either way the row
ends ``failed`` with one of the reasons below, which ``reason_class`` maps to
the label of ``postroom_messages_failed_total``.
"""

from __future__ import annotations

import time

BUDGET_CPU = "budget_cpu"
BUDGET_MEMORY = "budget_memory"
ATTEMPTS_EXHAUSTED = "attempts_exhausted"
ERROR = "error"
REASON_CLASSES = (BUDGET_CPU, BUDGET_MEMORY, ATTEMPTS_EXHAUSTED, ERROR)

CPU_PREFIX = "over the per-message CPU budget"
MEMORY_PREFIX = "over the per-message memory budget"
ATTEMPTS_PREFIX = "gave up after"
PREFIXES = {BUDGET_CPU: CPU_PREFIX, BUDGET_MEMORY: MEMORY_PREFIX, ATTEMPTS_EXHAUSTED: ATTEMPTS_PREFIX}


def cpu_reason(limit: float, used: float, when: str, how: str) -> str:
    return f"{CPU_PREFIX} ({limit:g} s): {used:.1f} s {when}; {how}"


def memory_reason(limit_mb: int, rss_mb: float) -> str:
    return f"{MEMORY_PREFIX} ({limit_mb} MB): its worker process reached {rss_mb:.0f} MB; killed"


def attempts_reason(attempts: int) -> str:
    return f"{ATTEMPTS_PREFIX} {attempts} attempts; the worker died or could not record the error"


def reason_class(error: str | None) -> str:
    """The metrics label of a failed row's reason."""
    for name, prefix in PREFIXES.items():
        if error and error.startswith(prefix):
            return name
    return ERROR


class OverBudget(Exception):
    """Raised by ``Budget.check``: the message is failed at once with ``reason``, never retried."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class Budget:
    """CPU time of this thread since the message was claimed, against ``cpu_seconds``."""

    def __init__(self, cpu_seconds: float) -> None:
        self.cpu_seconds = cpu_seconds
        self.cpu_start = time.thread_time()

    def used(self) -> float:
        return time.thread_time() - self.cpu_start

    def check(self, stage: str) -> None:
        """Raise OverBudget when the message already took more than its CPU time (called after each stage)."""
        if self.cpu_seconds > 0 and (used := self.used()) > self.cpu_seconds:
            raise OverBudget(BUDGET_CPU, cpu_reason(self.cpu_seconds, used, f"by the end of {stage}", "stopped"))
