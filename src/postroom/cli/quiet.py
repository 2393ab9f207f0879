"""Keep library chatter off an operator's terminal.

flanker builds its address parsers with ply when first imported. When the
parser tables shipped in its package do not match (another ply version) or
were never written, ply regenerates them and logs a warning per unreachable
grammar symbol (about 30 lines) through flanker's logger, before any of
postroom's logging is configured, so Python's last-resort handler prints
them. The grammar is flanker's, fixed and known to work: nothing there is
for an operator. Levels must be set before flanker is imported, so every
command does it first (worker processes start from the same entry point).
"""

from __future__ import annotations

import logging

PARSER_LOGGERS = ("flanker.addresslib._parser.parser", "flanker.addresslib._parser.lexer")


def quiet_parser_generator() -> None:
    """Silence ply's table generation, which flanker routes through these loggers."""
    for name in PARSER_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
