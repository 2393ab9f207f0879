"""Errors postroom reports in one line, and ParseFailed, the one outcome the parsing stage raises.

The pipeline's other outcomes are statuses (postroom.statuses), returned by
the stages rather than raised; bugs are plain exceptions.
"""

from __future__ import annotations


class PostroomError(Exception):
    """Base for errors postroom reports to people in one line."""


class ConfigError(PostroomError):
    """Settings are missing or wrong."""


class NotFound(PostroomError):
    """A named thing (tenant, message, conversation) does not exist."""


class ParseFailed(PostroomError):
    """The raw message cannot be turned into a ParsedMessage at all; it stays stored."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
