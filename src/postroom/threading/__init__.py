"""Threading: decide where an inbound message belongs (pure code; storage answers the questions).

``match(MatchInput.from_parsed(...), lookup, secret=..., policy=...) -> ThreadMatch``.
The value helpers threading shares with every layer live below it: Message-IDs
(``postroom.messageids``), subjects, reply and bounce tokens, trust flags and
the tenant's ``ThreadingPolicy`` (``postroom.threading_policy``).
"""

from postroom.threading.strategies import ConversationLookup, MatchInput, match

__all__ = ["ConversationLookup", "MatchInput", "match"]
