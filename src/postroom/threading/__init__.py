"""Threading: decide where an inbound message belongs (pure code; storage answers the questions).

``match(MatchInput.from_parsed(...), lookup, secret=..., policy=...) -> ThreadMatch``.
For outbound mail: ``tokens.make_reply_address``, ``subjects.tag_subject``,
``references.make_message_id`` and ``references.thread_references``.
"""

from postroom.threading.policy import ThreadingPolicy
from postroom.threading.strategies import ConversationLookup, ConversationRef, MatchInput, ThreadMatch, match
from postroom.threading.subjects import reference_tag, subject_key, tag_subject
from postroom.threading.tokens import make_reply_address, verify_token

__all__ = [
    "ConversationLookup",
    "ConversationRef",
    "MatchInput",
    "ThreadMatch",
    "ThreadingPolicy",
    "make_reply_address",
    "match",
    "reference_tag",
    "subject_key",
    "tag_subject",
    "verify_token",
]
