"""Shared by the parser fuzz tests and the atheris harness: what a parse may cost and what it may return."""

from __future__ import annotations

import signal
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from postroom.errors import ParseFailed
from postroom.model import ParsedMessage
from postroom.parsing import parse


class ParseHung(Exception):
    """The parser ran past its time bound."""


@contextmanager
def time_bound(seconds: float) -> Iterator[None]:
    """Interrupt the main thread with ParseHung after ``seconds`` (SIGALRM), so a hang fails fast."""
    def expired(*_: object) -> None:
        raise ParseHung(f"parse took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass(frozen=True)
class Outcome:
    parsed: ParsedMessage | None
    failed: ParseFailed | None
    seconds: float
    peak_bytes: int


def checked_parse(raw: bytes, *, seconds: float = 10.0, measure_memory: bool = False) -> Outcome:
    """Parse ``raw`` under a time bound; anything but a ParsedMessage or ParseFailed propagates."""
    if measure_memory:
        tracemalloc.start()
    started = time.perf_counter()
    try:
        with time_bound(seconds):
            try:
                result: ParsedMessage | None = parse(raw)
                failed = None
            except ParseFailed as exc:
                result, failed = None, exc
        assert failed is not None or isinstance(result, ParsedMessage), type(result)
        peak = tracemalloc.get_traced_memory()[1] if measure_memory else 0
        return Outcome(result, failed, time.perf_counter() - started, peak)
    finally:
        if measure_memory:
            tracemalloc.stop()
