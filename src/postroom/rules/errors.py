"""The one error type a rules file produces, carrying every problem found."""

from __future__ import annotations

from postroom.errors import ConfigError


class RulesError(ConfigError):
    """A rules file was refused; ``lines`` are ``file:line:col: message`` strings.

    All problems are collected so an admin fixes a file in one pass instead
    of one error per save.
    """

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = list(lines)
