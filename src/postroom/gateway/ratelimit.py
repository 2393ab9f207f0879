"""Token buckets per client IP and per envelope sender.

A flooding client or sender runs its own bucket dry and gets a temporary
refusal (421 for an IP, which also closes the connection; 451 for a sender),
while every other IP and sender keeps its own full bucket, so one flood cannot
starve well-behaved senders. Temporary codes make a real MTA retry later.

The client IP is proven by the connection, so it pays one token per
transaction at MAIL FROM: a flood of MAIL/RSET from one address runs dry.
The envelope sender is only a claim; a stranger can write anyone's address in
MAIL FROM for free. So the sender's bucket is only looked at there (an empty
one is refused early) and is charged at the end of DATA, for a message about
to be accepted: spoofing a sender's budget away costs whole messages, each
also paid for by the spoofer's own IP bucket.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from postroom.settings import Settings

IP_LIMITED = "421 4.7.0 Too many messages from your address, try again later"
SENDER_LIMITED = "451 4.7.1 Too many messages from this sender, try again later"
MAX_KEYS = 100_000


@dataclass(frozen=True)
class Rate:
    """``per_minute`` tokens refill continuously up to ``burst``; 0 per minute disables the limit."""

    per_minute: int
    burst: int

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0 and self.burst > 0


class TokenBuckets:
    """One bucket per key, least recently used keys forgotten past ``MAX_KEYS`` (bounded memory)."""

    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def has(self, key: str) -> bool:
        """Whether ``key`` has a token left, without spending it (or remembering the key)."""
        if not self.rate.enabled:
            return True
        now = self.clock()
        with self._lock:
            found = self._buckets.get(key)
        return found is None or found[0] + (now - found[1]) * self.rate.per_minute / 60.0 >= 1.0

    def take(self, key: str) -> bool:
        """Spend one token for ``key``; False when its bucket is empty."""
        if not self.rate.enabled:
            return True
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.pop(key, (float(self.rate.burst), now))
            tokens = min(float(self.rate.burst), tokens + (now - last) * self.rate.per_minute / 60.0)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > MAX_KEYS:
                self._buckets.popitem(last=False)
            return allowed


@dataclass
class RateLimits:
    """The gateway's two limits; ``admit`` and ``charge`` return the refusal to send, or None to go on."""

    per_ip: TokenBuckets
    per_sender: TokenBuckets

    @classmethod
    def of(cls, ip: Rate, sender: Rate, clock: Callable[[], float] = time.monotonic) -> RateLimits:
        return cls(TokenBuckets(ip, clock), TokenBuckets(sender, clock))

    @classmethod
    def unlimited(cls) -> RateLimits:
        return cls.of(Rate(0, 0), Rate(0, 0))

    @property
    def enabled(self) -> bool:
        """False when both limits are off, so MAIL FROM can skip ``check`` altogether."""
        return self.per_ip.rate.enabled or self.per_sender.rate.enabled

    def admit(self, ip: str, sender: str) -> str | None:
        """At MAIL FROM: one token of the IP's bucket; a sender with none left is refused but not charged."""
        if not self.per_ip.take(ip):
            return IP_LIMITED
        if not self.per_sender.has(_sender_key(ip, sender)):
            return SENDER_LIMITED
        return None

    def charge(self, ip: str, sender: str) -> str | None:
        """At the end of DATA: one token of the sender's bucket for the message about to be accepted."""
        return None if self.per_sender.take(_sender_key(ip, sender)) else SENDER_LIMITED


def _sender_key(ip: str, sender: str) -> str:
    # Null senders (bounces) share no bucket across IPs, so one IP's bounces cannot block another's.
    return sender.strip().lower() or f"<>{ip}"


def rate_limits(settings: Settings) -> RateLimits:
    """The limits configured by POSTROOM_RATE_* (per minute 0 turns a limit off)."""
    return RateLimits.of(Rate(settings.rate_ip_per_minute, settings.rate_ip_burst),
                         Rate(settings.rate_sender_per_minute, settings.rate_sender_burst))
