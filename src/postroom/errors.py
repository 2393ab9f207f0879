"""Outcome exceptions that steer the pipeline, and configuration errors.

Outcomes end in -ed (Rejected, Discarded, Deferred); bugs are plain exceptions.
"""

from __future__ import annotations


class PostroomError(Exception):
    """Base for errors postroom reports to people in one line."""


class ConfigError(PostroomError):
    """Settings are missing or wrong."""


class NotFound(PostroomError):
    """A named thing (tenant, message, conversation) does not exist."""


class Rejected(PostroomError):
    """Refuse the message with an SMTP-style code and reason; never retried."""

    def __init__(self, reason: str, code: int = 550, enhanced: str = "5.7.1") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.enhanced = enhanced


class Discarded(PostroomError):
    """Keep the message for operators but do nothing more with it; never retried."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Deferred(PostroomError):
    """A temporary condition: try the stage again later."""


class ParseFailed(PostroomError):
    """The raw message cannot be turned into a ParsedMessage at all; it stays stored."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
