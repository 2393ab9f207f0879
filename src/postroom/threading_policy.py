"""Per-tenant threading settings, read from the tenant's ``settings`` JSON under ``"threading"``.

Validated here so a bad value is refused when set, and a stored value that
is somehow wrong falls back to the default instead of breaking the pipeline.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from postroom.errors import PostroomError

NewMailPolicy = Literal["new", "join_open"]
SETTINGS_KEY = "threading"


@dataclass(frozen=True)
class ThreadingPolicy:
    """How one tenant threads mail.

    ``heuristic``: match by same contact + same subject within ``heuristic_days``.
    ``new_mail``: what a fresh mail from a contact with an open conversation does.
    ``strict_senders``: mail that finds a conversation (token, Message-ID chain, tag) but whose sender is not a
    participant goes to the unsorted inbox (on, the default) instead of being attached flagged ``foreign_sender``.
    ``autoclose_days``: close conversations idle this long (1 to 15), None = off.
    ``loop_max`` / ``loop_window_minutes``: the loop breaker (more than N from one sender in the window).
    """

    heuristic: bool = True
    heuristic_days: int = 30
    new_mail: NewMailPolicy = "new"
    strict_senders: bool = True
    autoclose_days: int | None = None
    loop_max: int = 10
    loop_window_minutes: int = 10

    @property
    def heuristic_window(self) -> timedelta:
        return timedelta(days=self.heuristic_days)

    @property
    def loop_window(self) -> timedelta:
        return timedelta(minutes=self.loop_window_minutes)

    @classmethod
    def from_settings(cls, settings: dict[str, Any] | None) -> ThreadingPolicy:
        """The tenant's policy; unknown or invalid stored values are ignored (defaults win)."""
        values = (settings or {}).get(SETTINGS_KEY) or {}
        policy = cls()
        for name, value in values.items():
            try:
                policy = policy.updated(**{name: value})
            except PostroomError:
                continue
        return policy

    def updated(self, **changes: Any) -> ThreadingPolicy:
        """A copy with ``changes`` applied; raises PostroomError with a readable reason."""
        known = {f.name for f in dataclasses.fields(self)}
        for name, value in changes.items():
            if name not in known:
                raise PostroomError(f"unknown threading setting {name!r}; known: {', '.join(sorted(known))}")
            _check(name, value)
        return dataclasses.replace(self, **changes)

    def as_settings(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check(name: str, value: Any) -> None:
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise PostroomError(f"threading setting {name}={value!r}: {what}")

    if name in ("heuristic", "strict_senders"):
        need(isinstance(value, bool), "must be true or false")
    elif name == "new_mail":
        need(value in ("new", "join_open"), "must be 'new' or 'join_open'")
    elif name == "autoclose_days":
        need(value is None or (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 15),
             "must be 1 to 15 days, or off")
    elif name == "heuristic_days":
        need(isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 365, "must be 1 to 365")
    elif name in ("loop_max", "loop_window_minutes"):
        need(isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 10_000,
             "must be a whole number from 1 to 10000")
