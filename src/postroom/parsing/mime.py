"""MIME plumbing: load the message, read its parts (payload, type, name, charset), walk them, pick bodies.

Built on the standard library's ``email`` package with ``policy.compat32``:
the ``default`` policy runs its full RFC 5322 header parser on every
Content-Type lookup (the feed parser itself makes several per part), which
made loading ~10x slower than compat32, and every header here is decoded
from its raw form anyway (:mod:`postroom.parsing.headers`).
mail-parser (which wraps the same package) was evaluated and not used here:
it decodes bodies with the declared charset only and swallows the parts'
structure we need for body choice and attachments, so charset repair
(:mod:`postroom.parsing.charsets`) and body selection are done directly.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
from email.message import Message

from postroom.parsing import limits
from postroom.parsing.charsets import decode_bytes, guess_decode
from postroom.parsing.header_repair import repair_header_block
from postroom.parsing.headers import decode_header_value, has_surrogates, raw_bytes, raw_header


class _Part(Message):
    """A compat32 Message that works its content type out once: the feed parser and this stage ask
    each part ~20 times, and each answer re-scans the part's header fields. Whatever changes the
    fields or the default type forgets the answer.

    It also bounds the cost of hostile structure: a multipart or message part nested deeper than
    ``MAX_MIME_DEPTH`` reads as ``application/octet-stream`` (the feed parser then keeps its content
    as one opaque leaf instead of recursing, and checks every line against every open boundary), and
    parameters are split in linear time (the stdlib re-slices the header for every parameter)."""

    _ctype: str | None = None
    _depth = 0
    depth_capped = False

    def attach(self, payload) -> None:
        if isinstance(payload, _Part):
            payload._depth = self._depth + 1
        super().attach(payload)

    def get_content_type(self) -> str:
        if self._ctype is None:
            found = super().get_content_type()
            self.depth_capped = self._depth >= limits.MAX_MIME_DEPTH and found.startswith(("multipart/", "message/"))
            self._ctype = "application/octet-stream" if self.depth_capped else found
        return self._ctype

    def _get_params_preserve(self, failobj, header):
        value = self.get(header, None)
        if value is None:
            return failobj
        params = []
        for p in _split_params(str(value)):
            name, eq, val = p.partition("=")
            params.append((name.strip(), val.strip()) if eq else (p.strip(), ""))
        try:
            return email.utils.decode_params(params)
        except (TypeError, ValueError):  # RFC 2231 continuations numbered and not, or a 5,000-digit number
            return email.utils.decode_params(params[:1] + [p for p in params[1:] if "*" not in p[0]])

    def set_raw(self, name, value) -> None:
        self._ctype = None
        super().set_raw(name, value)

    def __setitem__(self, name, val) -> None:
        self._ctype = None
        super().__setitem__(name, val)

    def __delitem__(self, name) -> None:
        self._ctype = None
        super().__delitem__(name)

    def add_header(self, _name, _value, **_params) -> None:
        self._ctype = None
        super().add_header(_name, _value, **_params)

    def replace_header(self, _name, _value) -> None:
        self._ctype = None
        super().replace_header(_name, _value)

    def set_default_type(self, ctype) -> None:
        self._ctype = None
        super().set_default_type(ctype)


def _split_params(value: str) -> list[str]:
    """``email.message._parseparam`` in linear time: same pieces, counting quotes incrementally."""
    plist = []
    start, size = 0, len(value)
    while True:
        end = value.find(";", start)
        quotes, counted = 0, start
        while end > start:
            quotes += value.count('"', counted, end) - value.count('\\"', counted, end)
            counted = end
            if quotes % 2 == 0:
                break
            end = value.find(";", end + 1)
        if end < 0:
            end = size
        piece = value[start:end]
        if "=" in piece:
            i = piece.index("=")
            piece = piece[:i].strip().lower() + "=" + piece[i + 1 :].strip()
        plist.append(piece.strip())
        if end >= size:
            return plist
        start = end + 1


def load(raw: bytes) -> tuple[Message, bool]:
    """Parse bytes into a Message (policy compat32); True when the header block was repaired."""
    repaired = repair_header_block(raw)
    return email.message_from_bytes(repaired, _class=_Part, policy=email.policy.compat32), repaired is not raw


def part_bytes(part: Message) -> bytes:
    """Transfer-decoded payload bytes of a leaf part (never raises)."""
    try:
        data = part.get_payload(decode=True)
    except (ValueError, AssertionError, LookupError, TypeError):
        data = None
    if isinstance(data, bytes):
        return data
    payload = part.get_payload()
    return payload.encode("utf-8", errors="surrogateescape") if isinstance(payload, str) else b""


def part_text(part: Message) -> str:
    """Decoded text of a text/* part with charset repair; NULs become U+FFFD as in headers."""
    return decode_bytes(part_bytes(part), charset(part)).replace("\x00", "\ufffd")


def content_type(part: Message) -> str:
    try:
        return part.get_content_type()
    except (ValueError, IndexError):
        return "application/octet-stream"


def disposition(part: Message) -> str | None:
    try:
        return part.get_content_disposition()
    except (ValueError, IndexError):
        return None


def filename(part: Message, charset_hint: str | None = None) -> str | None:
    """The part's file name from Content-Disposition or Content-Type (RFC 2231, RFC 2047).

    Raw 8-bit names (no RFC 2047/2231) are decoded with ``charset_hint`` (the charset the
    sender declared elsewhere in the message) or a guess: compat32 would turn them into U+FFFD."""
    raws = [raw_header(part, h) or "" for h in ("Content-Disposition", "Content-Type")]
    if not any("name" in r.lower() for r in raws):
        return None  # most body parts: skip the stdlib's parameter parsing (called for every leaf)
    if any(has_surrogates(r) for r in raws):
        part = _decoded_params(raws, charset_hint)
    missing = object()
    try:
        name = part.get_param("filename", missing, "content-disposition")
        if name is missing:
            name = part.get_param("name", missing)
        name = None if name is missing else collapse_rfc2231(name).strip()
        name = name or part.get_param("name")
    except (ValueError, IndexError, TypeError, LookupError):
        name = None
    if isinstance(name, tuple):
        name = collapse_rfc2231(name)
    return decode_header_value(str(name)) if name else None


def collapse_rfc2231(value: str | tuple) -> str:
    """``email.utils.collapse_rfc2231_value`` decoding through :func:`decode_bytes`: the stdlib raises
    on charset names like ``undefined`` and shows the bytes as Latin-1 for unknown ones."""
    if not isinstance(value, tuple) or len(value) != 3:
        return email.utils.unquote(str(value))
    charset, _, text = value
    return decode_bytes(bytes(text, "raw-unicode-escape"), charset or "us-ascii")


def _decoded_params(raws: list[str], charset_hint: str | None) -> Message:
    """A header-only copy of Content-Disposition/Content-Type with raw 8-bit bytes decoded."""
    copy = Message()
    for name, value in zip(("Content-Disposition", "Content-Type"), raws, strict=True):
        if value:
            data = raw_bytes(value)
            copy[name] = decode_bytes(data, charset_hint) if charset_hint else guess_decode(data)
    return copy


def charset(part: Message) -> str | None:
    """The part's declared charset parameter, if any."""
    try:
        found = part.get_param("charset")
    except (ValueError, IndexError):
        return None
    if isinstance(found, tuple):
        found = collapse_rfc2231(found)
    return found if isinstance(found, str) and found.strip() else None


def is_attachment(part: Message) -> bool:
    """A leaf that is not a body: declared attachment, named, or non-text."""
    ctype = content_type(part)
    disp = disposition(part)
    if ctype == "message/rfc822":
        return True
    if part.is_multipart() or ctype in ("message/delivery-status", "text/rfc822-headers"):
        return False
    if disp == "attachment":
        return True
    if ctype in ("text/plain", "text/html"):
        return bool(filename(part)) and disp != "inline"
    return not ctype.startswith("multipart/")


def bodies(msg: Message) -> tuple[str, str | None]:
    """The plain text and HTML bodies, joining inline text parts of mixed mail."""
    texts: list[str] = []
    htmls: list[str] = []
    _collect(msg, texts, htmls)
    return "\n".join(t for t in texts if t), ("\n".join(htmls) if htmls else None)


def _collect(part: Message, texts: list[str], htmls: list[str]) -> None:
    ctype = content_type(part)
    if ctype == "message/rfc822":
        return
    if part.is_multipart():
        children = [c for c in _children(part) if isinstance(c, Message)]
        if ctype == "multipart/alternative":
            _collect_alternative(children, texts, htmls)
            return
        for child in children:
            _collect(child, texts, htmls)
        return
    if is_attachment(part):
        return
    if ctype == "text/html":
        htmls.append(part_text(part))
    elif ctype in ("text/plain", "text/enriched", "text/markdown") or ctype.startswith("text/x-"):
        texts.append(part_text(part))


def _collect_alternative(children: list[Message], texts: list[str], htmls: list[str]) -> None:
    """From alternatives keep one plain and one HTML rendering (the richest last)."""
    plain: list[str] = []
    html: list[str] = []
    for child in children:
        sub_t: list[str] = []
        sub_h: list[str] = []
        _collect(child, sub_t, sub_h)
        plain, html = (sub_t or plain), (sub_h or html)
    texts.extend(plain)
    htmls.extend(html)


def _children(part: Message) -> list:
    payload = part.get_payload()
    return payload if isinstance(payload, list) else []


def walk_leaves(msg: Message, into_messages: bool = False):
    """Leaf parts in order; attached messages are leaves unless asked otherwise."""
    stack = [msg]
    while stack:
        part = stack.pop()
        if part.is_multipart() and (into_messages or content_type(part) != "message/rfc822" or part is msg):
            stack.extend(reversed([c for c in _children(part) if isinstance(c, Message)]))
        else:
            yield part


def defects(msg: Message) -> list[str]:
    """The email package's defects over the whole tree, by class name, and where nesting was cut."""
    found: list[str] = []
    for part in msg.walk():
        found.extend(type(d).__name__ for d in getattr(part, "defects", []))
        if content_type(part) and getattr(part, "depth_capped", False):
            found.append(f"mime-truncated: parts nested deeper than {limits.MAX_MIME_DEPTH} levels kept as one "
                         "attachment")
    return list(dict.fromkeys(found))
