"""Cost bounds of the parsing stage: every byte comes from a stranger (issue 14).

Each stage is linear in its input; what one stage derives from another is capped here so a small
message cannot become a large one. A capped message is kept: the field is cut, its name goes into
``ParsedMessage.truncated`` and a ``<field>-truncated: ...`` line into ``defects``.

- Derived text (the text rendered from HTML, the sanitised HTML) is at most ``DERIVED_RATIO`` times
  the part it comes from, but never less than ``DERIVED_FLOOR`` (short HTML with long quotes is
  ordinary) and never more than ``MAX_TEXT``.
- Every text field (text, html, reply, quoted, signature) is at most ``MAX_TEXT`` characters; the
  raw message stays whole in the blob store.
- A decoded header value is at most ``MAX_HEADER_TEXT`` characters; an address list is read from
  its first ``MAX_ADDRESS_LIST`` characters.
- Nesting: ``MAX_MIME_DEPTH`` levels of multipart/message parts (a deeper part is one opaque
  attachment), ``MAX_HTML_DEPTH`` open HTML elements (deeper tags are dropped, their text kept),
  ``MAX_QUOTE_DEPTH`` levels of ``> `` prefix for nested ``<blockquote>``; at most
  ``MAX_HTML_ATTRIBUTES`` attributes per HTML tag (the rest are dropped before sanitising).
"""

from __future__ import annotations

DERIVED_RATIO = 4
DERIVED_FLOOR = 65_536
MAX_TEXT = 2_000_000
MAX_HEADER_TEXT = 65_536
MAX_ADDRESS_LIST = 20_000
MAX_MIME_DEPTH = 32
MAX_HTML_DEPTH = 128
MAX_QUOTE_DEPTH = 16
MAX_HTML_ATTRIBUTES = 256


def derived_limit(source_length: int) -> int:
    """The most characters text derived from ``source_length`` characters may have."""
    return min(MAX_TEXT, max(DERIVED_RATIO * source_length, DERIVED_FLOOR))
