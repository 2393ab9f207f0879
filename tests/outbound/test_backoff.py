"""Retry timing: exponential, capped, jittered over the upper half of each step."""

from __future__ import annotations

from postroom.outbound.delivery import backoff
from postroom.settings import Settings

SETTINGS = Settings(outbound_backoff_ms=60_000, outbound_max_backoff_ms=4_000_000)


def test_backoff_doubles_and_is_capped() -> None:
    top = [backoff(n, SETTINGS, rng=lambda: 1.0) for n in range(1, 10)]
    assert top[:4] == [60.0, 120.0, 240.0, 480.0]
    assert max(top) == 4000.0 and top[-1] == 4000.0


def test_jitter_stays_within_the_upper_half() -> None:
    low = [backoff(n, SETTINGS, rng=lambda: 0.0) for n in range(1, 5)]
    assert low == [30.0, 60.0, 120.0, 240.0]


def test_default_lifetime_is_five_days_like_postfix() -> None:
    assert Settings().outbound_lifetime_seconds == 5 * 24 * 3600
